import XCTest
@testable import Monitor

/// `MSRValues`, the list that replaced the dictionaries of MSR values L0
/// knows a vCPU holds: it must answer as a dictionary would.
final class MSRValuesTests: XCTestCase {
    func testItAnswersAsADictionary() {
        var values = MSRValues()
        var reference: [UInt32: UInt64] = [:]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let index = UInt32.random(in: 0x170...0x17a, using: &rng)
            let value: UInt64? = Bool.random(using: &rng) ? UInt64.random(in: 0...3, using: &rng) : nil
            values[index] = value
            reference[index] = value
            for i in UInt32(0x170)...0x17a { XCTAssertEqual(values[i], reference[i], "MSR \(i)") }
        }
    }
}
