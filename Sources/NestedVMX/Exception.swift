/// An exception an instruction raises (SDM Vol. 3A 6.15), with its error
/// code where the vector has one.
public struct X86Exception: Error, Equatable, Sendable, CustomStringConvertible {
    public var vector: UInt8
    public var errorCode: UInt32?
    /// For #PF: the faulting linear address, which goes to CR2.
    public var faultAddress: UInt64?

    public init(vector: UInt8, errorCode: UInt32? = nil, faultAddress: UInt64? = nil) {
        self.vector = vector; self.errorCode = errorCode; self.faultAddress = faultAddress
    }

    public static let invalidOpcode = X86Exception(vector: 6)                        // #UD
    public static func generalProtection(_ code: UInt32 = 0) -> X86Exception { X86Exception(vector: 13, errorCode: code) }
    public static func stackFault(_ code: UInt32 = 0) -> X86Exception { X86Exception(vector: 12, errorCode: code) }
    public static func pageFault(errorCode: UInt32, address: UInt64) -> X86Exception {
        X86Exception(vector: 14, errorCode: errorCode, faultAddress: address)
    }

    public var description: String {
        let names: [UInt8: String] = [6: "#UD", 12: "#SS", 13: "#GP", 14: "#PF"]
        var s = names[vector] ?? "vector \(vector)"
        if let errorCode { s += "(\(errorCode))" }
        if let faultAddress { s += " at 0x" + String(faultAddress, radix: 16) }
        return s
    }
}
