import CLibElf

/// One PT_LOAD segment, placed by its physical address.
public struct LoadSegment: Equatable, Sendable {
    public var physicalAddress: UInt64
    public var virtualAddress: UInt64
    public var fileOffset: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    /// PF_X: the segment holds code.
    public var executable = false
}

/// A function symbol (STT_FUNC with a size) of the image's symbol table.
public struct FunctionSymbol: Equatable, Sendable {
    public var name: String
    public var address: UInt64
    public var size: UInt64
}

/// The loadable view of an ELF executable, read with libelf. ELF32 (including
/// 64-bit code converted into an `elf32-i386` container) and ELF64 alike.
public struct ELFImage: Equatable, Sendable {
    public var is64Bit: Bool
    public var entry: UInt64
    public var segments: [LoadSegment]
    /// The functions of `.symtab`, by address; empty for a stripped image.
    public var functions: [FunctionSymbol] = []

    static let elfMagic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]

    public static func isELF(_ bytes: [UInt8]) -> Bool { bytes.starts(with: elfMagic) }

    /// Parses `bytes`; `path` names the file in errors.
    public static func parse(_ bytes: [UInt8], path: String) throws(MonitorError) -> ELFImage {
        func fail(_ reason: String) -> MonitorError { .badImage(path: path, reason: reason) }
        guard isELF(bytes) else { throw fail("not an ELF file") }
        // libelf reports a cut header only as "invalid ELF file data"; name the problem.
        let headerSize = bytes.count > 4 && bytes[4] == UInt8(ELFCLASS64) ? 64 : 52
        guard bytes.count >= headerSize else {
            throw fail("truncated ELF header: the file has \(bytes.count) bytes, the header needs \(headerSize)")
        }
        guard elf_version(UInt32(EV_CURRENT)) != UInt32(EV_NONE) else { throw fail("libelf: \(elfError())") }

        var copy = bytes   // libelf wants a mutable buffer; it does not keep it past elf_end
        let result = copy.withUnsafeMutableBytes { raw -> Result<ELFImage, MonitorError> in
            Result { () throws(MonitorError) in try parseMapped(raw, fileSize: bytes.count, fail: fail) }
        }
        return try result.get()
    }

    private static func parseMapped(_ raw: UnsafeMutableRawBufferPointer, fileSize: Int,
                                    fail: (String) -> MonitorError) throws(MonitorError) -> ELFImage {
        guard let elf = elf_memory(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count) else {
            throw fail("libelf: \(elfError())")
        }
        defer { elf_end(elf) }
        guard elf_kind(elf) == ELF_K_ELF else { throw fail("not an ELF executable") }
        let elfClass = gelf_getclass(elf)
        guard elfClass == ELFCLASS32 || elfClass == ELFCLASS64 else { throw fail("unknown ELF class \(elfClass)") }
        var ehdr = GElf_Ehdr()
        guard gelf_getehdr(elf, &ehdr) != nil else { throw fail("truncated or corrupt ELF header: \(elfError())") }
        guard ehdr.e_ident.5 == UInt8(ELFDATA2LSB) else { throw fail("not a little-endian ELF file") }
        guard ehdr.e_machine == UInt16(EM_386) || ehdr.e_machine == UInt16(EM_X86_64) else {
            throw fail("ELF machine \(ehdr.e_machine) is not x86 (EM_386 or EM_X86_64)")
        }
        guard ehdr.e_type == UInt16(ET_EXEC) else { throw fail("ELF type \(ehdr.e_type) is not an executable (ET_EXEC)") }
        var count = 0
        guard elf_getphdrnum(elf, &count) == 0 else { throw fail("cannot read program headers: \(elfError())") }
        var segments: [LoadSegment] = []
        for i in 0..<count {
            var phdr = GElf_Phdr()
            guard gelf_getphdr(elf, Int32(i), &phdr) != nil else {
                throw fail("program header \(i) is truncated or corrupt: \(elfError())")
            }
            guard phdr.p_type == UInt32(PT_LOAD), phdr.p_memsz > 0 else { continue }
            let s = LoadSegment(physicalAddress: phdr.p_paddr, virtualAddress: phdr.p_vaddr,
                                fileOffset: phdr.p_offset, fileSize: phdr.p_filesz, memorySize: phdr.p_memsz,
                                executable: phdr.p_flags & UInt32(PF_X) != 0)
            guard s.fileSize <= s.memorySize else {
                throw fail("segment \(i) has a file size (\(s.fileSize)) larger than its memory size (\(s.memorySize))")
            }
            guard s.fileOffset <= UInt64(fileSize), s.fileSize <= UInt64(fileSize) - s.fileOffset else {
                throw fail("segment \(i) extends past the end of the file (truncated file?)")
            }
            guard s.physicalAddress <= UInt64.max - s.memorySize else { throw fail("segment \(i) wraps the address space") }
            segments.append(s)
        }
        guard !segments.isEmpty else { throw fail("no loadable (PT_LOAD) segments") }
        let sorted = segments.sorted { $0.physicalAddress < $1.physicalAddress }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.physicalAddress + a.memorySize > b.physicalAddress {
            throw fail("segments at \(hex(a.physicalAddress)) and \(hex(b.physicalAddress)) overlap")
        }
        return ELFImage(is64Bit: elfClass == ELFCLASS64, entry: ehdr.e_entry, segments: sorted,
                        functions: functionSymbols(elf))
    }

    /// STT_FUNC symbols with a size, from every SHT_SYMTAB section; a
    /// symbol table libelf cannot read counts as absent (the code is then
    /// swept by segment).
    private static func functionSymbols(_ elf: OpaquePointer) -> [FunctionSymbol] {
        var functions: [FunctionSymbol] = []
        var section = elf_nextscn(elf, nil)
        while let scn = section {
            defer { section = elf_nextscn(elf, scn) }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(scn, &shdr) != nil, shdr.sh_type == UInt32(SHT_SYMTAB), shdr.sh_entsize > 0,
                  let data = elf_getdata(scn, nil) else { continue }
            for i in 0..<Int32(clamping: shdr.sh_size / shdr.sh_entsize) {
                var sym = GElf_Sym()
                guard gelf_getsym(data, i, &sym) != nil, sym.st_info & 0xf == UInt8(STT_FUNC), sym.st_size > 0,
                      sym.st_shndx != UInt16(SHN_UNDEF) else { continue }
                let name = elf_strptr(elf, Int(shdr.sh_link), Int(sym.st_name)).map { String(cString: $0) } ?? "?"
                functions.append(FunctionSymbol(name: name, address: sym.st_value, size: sym.st_size))
            }
        }
        return functions.sorted { $0.address < $1.address }
    }

    /// The physical address of the entry point: the ELF entry is a virtual
    /// address, translated through the segment that contains it.
    public var physicalEntry: UInt64? {
        for s in segments where entry >= s.virtualAddress && entry - s.virtualAddress < s.memorySize {
            return s.physicalAddress + (entry - s.virtualAddress)
        }
        return nil
    }

    private static func elfError() -> String {
        guard let message = elf_errmsg(-1) else { return "unknown error" }
        return String(cString: message)
    }
}
