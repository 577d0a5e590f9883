import Foundation
import XCTest
import VMXArch

/// turtle, the C guest hypervisor, prints exit reasons from its own table
/// (`reason_names` in Guests/turtle/exit.c) and dispatches on its own
/// `EXIT_REASON_*` numbers (Guests/turtle/turtle.h), since a freestanding guest
/// cannot use VMXArch. These tests read both from the source and hold every
/// entry to VMXArch's names of SDM Vol. 3C Appendix C (Table C-1), so they
/// cannot drift apart: a misnumbered entry, a number Appendix C leaves unused
/// or a renamed reason fails here.
final class TurtleExitNameTests: XCTestCase {
    static let exitC = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Guests/turtle/exit.c")
    static let turtleH = exitC.deletingLastPathComponent().appendingPathComponent("turtle.h")

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

    /// The same for turtle.h's macro names (after `EXIT_REASON_`).
    static let macroSpellings: [String: String] = [
        "EXCEPTION": "EXCEPTION_NMI",
        "IO": "IO_INSTRUCTION",
        "RDMSR": "MSR_READ",
        "WRMSR": "MSR_WRITE",
        "INVALID_GUEST": "INVALID_STATE",
        "MSR_LOADING": "MSR_LOAD_FAIL",
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

    /// The `#define EXIT_REASON_NAME N` macros with a decimal value, in source
    /// order, without the prefix; `EXIT_REASON_MAX` (a bound, no reason) left out.
    static func parseMacros(_ source: String) -> [(number: Int, name: String)] {
        source.matches(of: /(?m)^#define\s+EXIT_REASON_(\w+)\s+(\d+)\b/).compactMap { match in
            guard match.output.1 != "MAX", let number = Int(match.output.2) else { return nil }
            return (number: number, name: String(match.output.1))
        }
    }

    /// One line per entry that disagrees with VMXArch; empty when all agree.
    /// `spellings` maps turtle's words to VMXArch's name where they differ.
    static func mismatches(in table: [(number: Int, name: String)],
                           spellings: [String: String] = turtleSpellings) -> [String] {
        var problems: [String] = []
        var seen = Set<Int>()
        for (number, name) in table {
            if !seen.insert(number).inserted { problems.append("[\(number)] appears twice") }
            guard let raw = UInt16(exactly: number), let expected = VMXExitReason(rawValue: raw).knownName else {
                problems.append("[\(number)] \"\(name)\": Appendix C defines no exit reason \(number)")
                continue
            }
            let spelled = spellings[name] ?? name
            if normalised(spelled) != normalised(expected) {
                problems.append("[\(number)] \"\(name)\": VMXArch names \(number) \(expected)")
            }
        }
        return problems
    }

    func testTurtleNamesMatchVMXArch() throws {
        let source = try String(contentsOf: Self.exitC, encoding: .utf8)
        let table = try XCTUnwrap(Self.parseTable(source), "no reason_names table in \(Self.exitC.path)")
        // 66 entries when this test was written: a parse that finds few has lost the table.
        XCTAssertGreaterThanOrEqual(table.count, 60, "reason_names parsed to \(table.count) entries")
        XCTAssertEqual(Self.mismatches(in: table), [])
    }

    func testTurtleMacrosMatchVMXArch() throws {
        let source = try String(contentsOf: Self.turtleH, encoding: .utf8)
        let macros = Self.parseMacros(source)
        // 17 macros when this test was written, HLT among them.
        XCTAssertGreaterThanOrEqual(macros.count, 15, "EXIT_REASON_* parsed to \(macros.count) macros")
        XCTAssertTrue(macros.contains { $0.name == "HLT" && $0.number == 12 })
        XCTAssertEqual(Self.mismatches(in: macros, spellings: Self.macroSpellings), [])
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

        let macros = Self.parseMacros("""
            #define EXIT_REASON\t\t0x4402
            #define EXIT_REASON_IO\t\t30
            #define EXIT_REASON_INVVPID\t50
            #define EXIT_REASON_MAX\t\t70
            """)
        XCTAssertEqual(macros.map(\.name), ["IO", "INVVPID"])
        XCTAssertEqual(Self.mismatches(in: macros, spellings: Self.macroSpellings),
                       ["[50] \"INVVPID\": VMXArch names 50 INVEPT"])
    }
}
