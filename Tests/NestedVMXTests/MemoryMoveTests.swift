import NestedVMX
import VMXArch
import XCTest

/// The MOV decoder behind EPT violations for stores KVM already retired
/// (SDM Vol. 2B "MOV", "MOVZX"), and the #PF error-code mask/match rule of
/// exception-bitmap exits (SDM 26.2).
final class MemoryMoveTests: XCTestCase {
    var cpu64: CPUState {
        var s = CPUState()
        s.cr0 = 0x8000_0011; s.efer = 0x500
        s.cs = SegmentState(selector: 8, limit: 0xffff_ffff, type: 0xb, l: true, g: true)
        s.ds = SegmentState(selector: 0x10, limit: 0xffff_ffff, type: 3, db: true, g: true)
        s.ss = s.ds
        return s
    }

    func testStoresAndLoads() throws {
        let store = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0x89, 0x02], state: cpu64))        // mov [rdx], eax
        XCTAssertEqual(store.length, 2); XCTAssertTrue(store.isWrite); XCTAssertEqual(store.size, 4)
        XCTAssertEqual(store.register, 0); XCTAssertEqual(store.operand.base, 2)
        let rex = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0x4c, 0x89, 0x02], state: cpu64))   // mov [rdx], r8 (REX.WR)
        XCTAssertEqual(rex.length, 3); XCTAssertEqual(rex.size, 8); XCTAssertEqual(rex.register, 8)
        let imm = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0xc7, 0x00, 1, 2, 3, 4], state: cpu64)) // mov dword [rax], imm32
        XCTAssertEqual(imm.length, 6); XCTAssertNil(imm.register)
        let load = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0x44, 0x8b, 0x06], state: cpu64))   // mov r8d, [rsi]
        XCTAssertFalse(load.isWrite); XCTAssertEqual(load.register, 8); XCTAssertEqual(load.operand.base, 6)
        let movzx = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0x0f, 0xb6, 0x01], state: cpu64))   // movzx eax, byte [rcx]
        XCTAssertFalse(movzx.isWrite); XCTAssertEqual(movzx.size, 1)
        let moffs = try XCTUnwrap(VMXDecoder.decodeMemoryMove([0xa3, 0xf0, 0, 0xe0, 0xfe, 0, 0, 0, 0], state: cpu64))
        XCTAssertEqual(moffs.length, 9); XCTAssertTrue(moffs.isWrite)
        XCTAssertEqual(UInt64(bitPattern: moffs.operand.displacement), 0xfee0_00f0)
        XCTAssertNil(VMXDecoder.decodeMemoryMove([0x89, 0xc2], state: cpu64), "a register form is not a memory access")
        XCTAssertNil(VMXDecoder.decodeMemoryMove([0xc7, 0x08, 1, 2, 3, 4], state: cpu64), "C7 /1 is not MOV")
        XCTAssertNil(VMXDecoder.decodeMemoryMove([0x01, 0x02], state: cpu64), "ADD is not a MOV")
        XCTAssertNil(VMXDecoder.decodeMemoryMove([0x89], state: cpu64), "truncated")
    }

    /// `mov [r10], eax` (41 89 02) and `mov [rdx], eax` (89 02) end at the same
    /// RIP; only the one whose operand is the faulting address is accepted.
    func testRetiredStoreIsFoundByItsAddress() {
        let code: [UInt8] = [0x90, 0x41, 0x89, 0x02]           // nop; mov [r10], eax
        var state = cpu64
        state.rip = 0x1000 + UInt64(code.count)                 // KVM reports the store retired
        state.gprs[.rdx] = 0xd000_0000
        state.gprs[.r10] = 0xd000_1000
        func fetch(_ linear: UInt64, _ count: Int) -> [UInt8]? {
            guard linear >= 0x1000, linear - 0x1000 + UInt64(count) <= UInt64(code.count) else { return nil }
            let at = Int(linear - 0x1000)
            return Array(code[at..<at + count])
        }
        XCTAssertEqual(VMXDecoder.retiredStoreLength(endingAt: state, address: 0xd000_1000, size: 4,
                                                     fetch: fetch, translate: { $0 }), 3)
        XCTAssertEqual(VMXDecoder.retiredStoreLength(endingAt: state, address: 0xd000_0000, size: 4,
                                                     fetch: fetch, translate: { $0 }), 2,
                       "the shorter candidate matches RDX instead")
        XCTAssertNil(VMXDecoder.retiredStoreLength(endingAt: state, address: 0xe000_0000, size: 4,
                                                   fetch: fetch, translate: { $0 }))
        XCTAssertNil(VMXDecoder.retiredStoreLength(endingAt: state, address: 0xd000_1000, size: 8,
                                                   fetch: fetch, translate: { $0 }), "the size must match too")
    }

    func testPageFaultErrorCodeMaskAndMatch() {
        var vmcs = VMCS12(address: 0)
        vmcs.write(.exceptionBitmap, 1 << 14)
        // Mask 0, match 0: every #PF matches, so bit 14 decides: exit.
        XCTAssertTrue(ExitRouting.wantsException(14, errorCode: 2, vmcs: vmcs))
        // Only write faults (bit 1) match: a read fault inverts the decision.
        vmcs.write(.pageFaultErrorCodeMask, 2)
        vmcs.write(.pageFaultErrorCodeMatch, 2)
        XCTAssertTrue(ExitRouting.wantsException(14, errorCode: 3, vmcs: vmcs))
        XCTAssertFalse(ExitRouting.wantsException(14, errorCode: 1, vmcs: vmcs))
        // With bit 14 clear, a non-matching #PF exits instead.
        vmcs.write(.exceptionBitmap, 0)
        XCTAssertTrue(ExitRouting.wantsException(14, errorCode: 1, vmcs: vmcs))
        XCTAssertFalse(ExitRouting.wantsException(14, errorCode: 3, vmcs: vmcs))
        // Other vectors: the bit alone.
        vmcs.write(.exceptionBitmap, 1 << 6)
        XCTAssertTrue(ExitRouting.wantsException(6, errorCode: nil, vmcs: vmcs))
        XCTAssertFalse(ExitRouting.wantsException(13, errorCode: 0, vmcs: vmcs))
        XCTAssertTrue(ExitRouting.hasErrorCode(13) && ExitRouting.hasErrorCode(14) && !ExitRouting.hasErrorCode(6))
    }
}
