/// Per-record exports: CSV (a header, then one row per record) and JSON
/// Lines (one object per record per line). Both keep every record, events
/// included, in file order; the `record` column is the record's index.
/// The exports write through `RecordFormatter`; the tests hold the
/// reference spelling of one record it is checked against
/// (Tests/TraceFormatTests/RecordExportReference.swift).
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

    /// The header, then one row per record (`RecordFormatter`). With
    /// `numeric`, rip, address and value are decimal, `vmx_reason` is -1 when
    /// there is none and `flags` is the flag byte, so every column but kind,
    /// reason and handler is an integer.
    public static func writeCSV(_ reader: TraceReader, to out: TextOutput, numeric: Bool = false) {
        out.write(csvHeader + "\n")
        let f = RecordFormatter(style: .csv, numeric: numeric)
        var i = 0
        reader.forEach { r in
            f.write(r, index: i, to: out)
            i &+= 1
        }
    }

    /// One object per record per line (`RecordFormatter`). With `numeric`,
    /// rip, address and value are JSON numbers and `flags` is the flag byte.
    public static func writeJSONLines(_ reader: TraceReader, to out: TextOutput, numeric: Bool = false) {
        let f = RecordFormatter(style: .json, numeric: numeric)
        var i = 0
        reader.forEach { r in
            f.write(r, index: i, to: out)
            i &+= 1
        }
    }
}
