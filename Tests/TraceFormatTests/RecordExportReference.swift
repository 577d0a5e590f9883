import TraceFormat

/// The reference spelling of one record in the CSV and JSON Lines exports
/// (Traces/README.md, `export`), written plainly with string interpolation:
/// `RecordFormatter`, which the exports use, must write the same bytes
/// (RecordExportTests).
extension RecordExport {
    static func csvRow(_ r: TraceRecord, index: Int) -> String {
        let vmx = r.vmxReason == TraceRecord.noVMXReason ? "" : String(r.vmxReason)
        return "\(index),\(r.timestamp),\(r.duration),\(r.level),\(r.vcpu),\(r.kind.name),\(r.kind.rawValue),"
            + "\(vmx),\(ExitReason(r).name),\(r.handler.name),\(r.episode),\(hex(r.rip)),\(hex(r.address)),"
            + "\(hex(r.value)),\(r.size),\(flagNames(r.flags).joined(separator: "+"))"
    }

    static func jsonLine(_ r: TraceRecord, index: Int) -> String {
        let vmx = r.vmxReason == TraceRecord.noVMXReason ? "null" : String(r.vmxReason)
        let flags = flagNames(r.flags).map { "\"\($0)\"" }.joined(separator: ",")
        return "{\"record\":\(index),\"timestamp_ns\":\(r.timestamp),\"duration_ns\":\(r.duration),"
            + "\"level\":\(r.level),\"vcpu\":\(r.vcpu),\"kind\":\"\(r.kind.name)\",\"kind_code\":\(r.kind.rawValue),"
            + "\"vmx_reason\":\(vmx),\"reason\":\"\(ExitReason(r).name)\",\"handler\":\"\(r.handler.name)\","
            + "\"episode\":\(r.episode),\"rip\":\"\(hex(r.rip))\",\"address\":\"\(hex(r.address))\","
            + "\"value\":\"\(hex(r.value))\",\"size\":\(r.size),\"flags\":[\(flags)]}"
    }
}
