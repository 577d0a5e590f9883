import KVM
import Monitor

/// `FuzzTarget.loader`. Input: a count of modules (0-2) and their sizes,
/// then the image, then the modules' bytes.
enum LoaderTarget {
    static let ramSize = 8 << 20
    /// One guest RAM for every input (a memfd mapping is too slow to make per run).
    nonisolated(unsafe) static var ram: GuestMemory? = try? GuestMemory(size: ramSize, name: "terrapin-fuzz")

    static func run(_ data: [UInt8]) {
        guard let ram else { fatalError("cannot make the fuzzer's guest RAM") }
        var input = FuzzInput(data)
        let moduleSizes = (0..<Int(input.u8() % 3)).map { _ in Int(input.integer() as UInt16) }
        let rest = input.rest()
        let imageSize = max(0, rest.count - moduleSizes.reduce(0, +))
        let image = Array(rest.prefix(imageSize))
        var modules: [BootModule] = []
        var at = imageSize
        for (i, size) in moduleSizes.enumerated() {
            let end = min(rest.count, at + size)
            modules.append(BootModule(bytes: Array(rest[at..<end]), commandLine: "module\(i) arg"))
            at = end
        }

        let info: BootInfo
        do {
            info = try MultibootLoader.load(image: image, path: "fuzz.elf", commandLine: "fuzz.elf x=1", modules: modules, into: ram)
        } catch {
            guard case let .badImage(path, reason) = error else { fatalError("load failed with \(error), not a refusal of the image") }
            invariant(path == "fuzz.elf" && !reason.isEmpty, "refusal without a reason")
            return
        }
        let size = UInt64(ramSize)
        invariant(info.kernelEnd <= size, "kernel ends at \(info.kernelEnd), past RAM")
        invariant(UInt64(info.infoAddress) < size, "boot information at \(info.infoAddress), past RAM")
        var previousEnd = info.kernelEnd
        for m in info.modules {
            invariant(m.lowerBound >= previousEnd && m.upperBound <= size, "module at \(m) overlaps or leaves RAM")
            previousEnd = m.upperBound
        }
        invariant(info.modules.count == modules.count, "\(info.modules.count) of \(modules.count) modules placed")
    }
}
