/// Per-record exports: CSV (a header, then one row per record) and JSON
/// Lines (one object per record per line). Both keep every record, events
/// included, in file order; the `record` column is the record's index.
public enum RecordExport {
    public static let csvHeader =
        "record,timestamp_ns,duration_ns,level,vcpu,kind,kind_code,vmx_reason,reason,handler,episode,rip,address,value,size,flags"

    /// Flag names joined by "+" ("unclaimed+string"); unknown bits as "bitN".
    public static func flagNames(_ f: RecordFlags) -> [String] {
        let names = ["unclaimed", "string", "faulted", "ept02-fault", "patched-site"]
        return (0..<8).compactMap { bit in
            f.rawValue & (1 << bit) == 0 ? nil : bit < names.count ? names[bit] : "bit\(bit)"
        }
    }

    public static func csvRow(_ r: TraceRecord, index: Int) -> String {
        let vmx = r.vmxReason == TraceRecord.noVMXReason ? "" : String(r.vmxReason)
        return "\(index),\(r.timestamp),\(r.duration),\(r.level),\(r.vcpu),\(r.kind.name),\(r.kind.rawValue),"
            + "\(vmx),\(ExitReason(r).name),\(r.handler.name),\(r.episode),\(hex(r.rip)),\(hex(r.address)),"
            + "\(hex(r.value)),\(r.size),\(flagNames(r.flags).joined(separator: "+"))"
    }

    public static func jsonLine(_ r: TraceRecord, index: Int) -> String {
        let vmx = r.vmxReason == TraceRecord.noVMXReason ? "null" : String(r.vmxReason)
        let flags = flagNames(r.flags).map { "\"\($0)\"" }.joined(separator: ",")
        return "{\"record\":\(index),\"timestamp_ns\":\(r.timestamp),\"duration_ns\":\(r.duration),"
            + "\"level\":\(r.level),\"vcpu\":\(r.vcpu),\"kind\":\"\(r.kind.name)\",\"kind_code\":\(r.kind.rawValue),"
            + "\"vmx_reason\":\(vmx),\"reason\":\"\(ExitReason(r).name)\",\"handler\":\"\(r.handler.name)\","
            + "\"episode\":\(r.episode),\"rip\":\"\(hex(r.rip))\",\"address\":\"\(hex(r.address))\","
            + "\"value\":\"\(hex(r.value))\",\"size\":\(r.size),\"flags\":[\(flags)]}"
    }

    public static func writeCSV(_ reader: TraceReader, to out: TextOutput) {
        out.write(csvHeader + "\n")
        var i = 0
        reader.forEach { r in
            out.write(csvRow(r, index: i) + "\n")
            i += 1
        }
    }

    public static func writeJSONLines(_ reader: TraceReader, to out: TextOutput) {
        var i = 0
        reader.forEach { r in
            out.write(jsonLine(r, index: i) + "\n")
            i += 1
        }
    }
}
