#include "cdeflate.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>

struct cdeflate_context {
	struct isal_zstream stream;
	uint8_t *level_buffer;
	uint32_t level_buffer_size;
};

cdeflate_context *cdeflate_new(void)
{
	cdeflate_context *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->level_buffer_size = ISAL_DEF_LVL1_DEFAULT;
	c->level_buffer = malloc(c->level_buffer_size);
	if (!c->level_buffer) {
		free(c);
		return NULL;
	}
	return c;
}

void cdeflate_free(cdeflate_context *c)
{
	if (!c)
		return;
	free(c->level_buffer);
	free(c);
}

size_t cdeflate_zlib(cdeflate_context *c, const uint8_t *input, size_t count, uint8_t *output, size_t capacity)
{
	if (!c || count > UINT32_MAX || capacity > UINT32_MAX)
		return 0;
	struct isal_zstream *s = &c->stream;
	isal_deflate_stateless_init(s);
	s->level = 1;
	s->level_buf = c->level_buffer;
	s->level_buf_size = c->level_buffer_size;
	s->gzip_flag = IGZIP_ZLIB;   /* the zlib header and Adler-32 trailer around the deflate data */
	s->flush = NO_FLUSH;
	s->end_of_stream = 1;
	s->next_in = (uint8_t *)input;
	s->avail_in = (uint32_t)count;
	s->next_out = output;
	s->avail_out = (uint32_t)capacity;
	if (isal_deflate_stateless(s) != COMP_OK || s->avail_in != 0)
		return 0;
	return s->total_out;
}
