#pragma once
#include <libelf.h>
#include <gelf.h>
