import Foundation
import XCTest
import VMXArch

/// turtle, the C guest hypervisor, prints exit reasons from its own table
/// (`reason_names` in Guests/turtle/exit.c), since a freestanding guest cannot
/// use VMXArch. These tests read that table from the source and hold every
/// entry to VMXArch's names of SDM Vol. 3C Appendix C (Table C-1), so the two
/// cannot drift apart: a misnumbered entry, a number Appendix C leaves unused
/// or a renamed reason fails here.
final class TurtleExitNameTests: XCTestCase {
    static let exitC = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Guests/turtle/exit.c")

    /// turtle's prose spellings that differ from VMXArch's Linux-style names by
    /// more than case, spaces and punctuation. Keyed by turtle's spelling, never
    /// by number, so an entry under the wrong number still fails.
    static let turtleSpellings: [String: String] = [
        "exception or NMI": "EXCEPTION_NMI",
        "start-up IPI": "SIPI_SIGNAL",
        "control-register access": "CR_ACCESS",
        "MOV DR": "DR_ACCESS",
        "RDMSR": "MSR_READ",
        "WRMSR": "MSR_WRITE",
        "VM-entry failure: invalid guest state": "INVALID_STATE",
        "VM-entry failure: MSR loading": "MSR_LOAD_FAIL",
        "VM-entry failure: machine-check event": "MCE_DURING_VMENTRY",
        "MWAIT": "MWAIT_INSTRUCTION",
        "MONITOR": "MONITOR_INSTRUCTION",
        "PAUSE": "PAUSE_INSTRUCTION",
        "virtualized EOI": "EOI_INDUCED",
        "GDTR/IDTR access": "GDTR_IDTR",
        "LDTR/TR access": "LDTR_TR",
        "EPT misconfiguration": "EPT_MISCONFIG",
        "VMX-preemption timer expired": "PREEMPTION_TIMER",
        "page-modification log full": "PML_FULL",
        "SPP-related event": "SPP",
    ]

    /// Upper case, letters and digits only: "I/O instruction" and
    /// "IO_INSTRUCTION" both become "IOINSTRUCTION".
    static func normalised(_ name: String) -> String {
        String(name.uppercased().unicodeScalars.filter { ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
            .map(Character.init))
    }

    /// The `[N] = "name"` entries of the `reason_names` initializer, in source
    /// order; nil when the source has no such table.
    static func parseTable(_ source: String) -> [(number: Int, name: String)]? {
        guard let declaration = source.range(of: "reason_names["),
              let open = source.range(of: "{", range: declaration.upperBound..<source.endIndex),
              let close = source.range(of: "};", range: open.upperBound..<source.endIndex) else { return nil }
        let body = source[open.upperBound..<close.lowerBound]
        return body.matches(of: /\[\s*(\d+)\s*\]\s*=\s*"([^"]*)"/).compactMap { match in
            Int(match.output.1).map { (number: $0, name: String(match.output.2)) }
        }
    }

    /// One line per entry that disagrees with VMXArch; empty when all agree.
    static func mismatches(in table: [(number: Int, name: String)]) -> [String] {
        var problems: [String] = []
        var seen = Set<Int>()
        for (number, name) in table {
            if !seen.insert(number).inserted { problems.append("[\(number)] appears twice") }
            guard let raw = UInt16(exactly: number), let expected = VMXExitReason(rawValue: raw).knownName else {
                problems.append("[\(number)] \"\(name)\": Appendix C defines no exit reason \(number)")
                continue
            }
            let spelled = turtleSpellings[name] ?? name
            if normalised(spelled) != normalised(expected) {
                problems.append("[\(number)] \"\(name)\": VMXArch names \(number) \(expected)")
            }
        }
        return problems
    }

    func testTurtleNamesMatchVMXArch() throws {
        let source = try String(contentsOf: Self.exitC, encoding: .utf8)
        let table = try XCTUnwrap(Self.parseTable(source), "no reason_names table in \(Self.exitC.path)")
        // 62 entries when this test was written: a parse that finds few has lost the table.
        XCTAssertGreaterThanOrEqual(table.count, 60, "reason_names parsed to \(table.count) entries")
        XCTAssertEqual(Self.mismatches(in: table), [])
    }

    /// The checker itself: drifted entries must be reported, agreeing ones not.
    func testCheckerReportsDrift() throws {
        let drifted = """
            static const char *const reason_names[EXIT_REASON_MAX + 1] = {
            \t[0] = "exception or NMI", [12] = "HLT", [30] = "I/O instruction",
            \t[65] = "SPP-related event", [35] = "RSM", [48] = "EPT misconfiguration",
            \t[12] = "HLT", [70000] = "HLT",
            };
            """
        let table = try XCTUnwrap(Self.parseTable(drifted))
        XCTAssertEqual(table.map(\.number), [0, 12, 30, 65, 35, 48, 12, 70000])
        XCTAssertEqual(Self.mismatches(in: table), [
            "[65] \"SPP-related event\": VMXArch names 65 PCONFIG",
            "[35] \"RSM\": Appendix C defines no exit reason 35",
            "[48] \"EPT misconfiguration\": VMXArch names 48 EPT_VIOLATION",
            "[12] appears twice",
            "[70000] \"HLT\": Appendix C defines no exit reason 70000",
        ])
        XCTAssertNil(Self.parseTable("static const char *names[] = { \"HLT\" };"))
    }
}
