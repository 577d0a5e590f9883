/// The part of Hyper-V's interface Terrapin offers L1 when the machine is
/// built with `--hyperv-evmcs`: the CPUID leaves that identify Hyper-V and
/// recommend the enlightened VMCS, and the VP assist page MSR that names it
/// (Hypervisor Top-Level Functional Specification, "Feature Discovery",
/// "Virtual Processor Assist Page", "Nested Virtualization"). Nothing else of
/// Hyper-V: no hypercalls, no SynIC, no other synthetic MSR (docs/EVMCS.md).
public enum HyperV {
    /// The synthetic MSR range (TLFS "Synthetic MSRs"): L0 takes every access
    /// to it, so that an MSR it does not offer raises #GP instead of
    /// reaching KVM's own Hyper-V emulation.
    public static let msrRange: ClosedRange<UInt32> = 0x4000_0000...0x4000_00ff
    /// HV_X64_MSR_VP_ASSIST_PAGE.
    public static let vpAssistPageMSR: UInt32 = 0x4000_0073

    /// One CPUID leaf, as the core describes it (the monitor turns it into
    /// KVM's entry).
    public struct Leaf: Equatable, Sendable {
        public let function: UInt32
        public let eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32
    }

    /// The highest hypervisor leaf offered.
    public static let maximumLeaf: UInt32 = 0x4000_000a
    /// CPUID 0x40000004 EAX bit 14, "Recommend using enlightened VMCS".
    public static let enlightenedVMCSRecommended: UInt32 = 1 << 14

    /// Leaves 0x40000000-0x4000000A (TLFS "Feature Discovery"):
    /// - 0x40000000: the maximum leaf and the vendor signature "Microsoft Hv",
    ///   which is what an L1 that speaks the interface looks for (QEMU's
    ///   Hyper-V enlightenments present the same);
    /// - 0x40000001: interface signature "Hv#1";
    /// - 0x40000003: no partition privileges and no feature of leaf 3: the
    ///   hypercall, VP index, SynIC and APIC-access MSRs are not offered;
    /// - 0x40000004: "use enlightened VMCS" (bit 14) and no spinlock
    ///   notification (EBX all ones, "never retry");
    /// - 0x4000000A: eVMCS versions 1 to 1 (EAX bits 7:0 low, 15:8 high).
    /// The other leaves are zero.
    public static var leaves: [Leaf] {
        func ascii(_ s: String) -> UInt32 { s.utf8.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } }
        var leaves = [Leaf(function: 0x4000_0000, eax: maximumLeaf, ebx: ascii("Micr"), ecx: ascii("osof"), edx: ascii("t Hv")),
                      Leaf(function: 0x4000_0001, eax: ascii("Hv#1"), ebx: 0, ecx: 0, edx: 0)]
        for f in UInt32(0x4000_0002)...0x4000_0009 {
            switch f {
            case 0x4000_0004: leaves.append(Leaf(function: f, eax: enlightenedVMCSRecommended, ebx: 0xffff_ffff, ecx: 0, edx: 0))
            default: leaves.append(Leaf(function: f, eax: 0, ebx: 0, ecx: 0, edx: 0))
            }
        }
        let versions = EnlightenedVMCS.version << 8 | EnlightenedVMCS.version
        leaves.append(Leaf(function: 0x4000_000a, eax: versions, ebx: 0, ecx: 0, edx: 0))
        return leaves
    }

    /// The VP assist page's fields that matter here (TLFS HV_VP_ASSIST_PAGE):
    /// "EnlightenVmEntry", a BOOLEAN byte at offset 40, and
    /// "CurrentNestedVmcs", the eVMCS's guest-physical address, at 48.
    public enum VPAssistPage {
        public static let enlightenVMEntryOffset: UInt64 = 40
        public static let currentNestedVMCSOffset: UInt64 = 48
    }
}

/// L1's Hyper-V state as L0 keeps it: whether the interface is offered and
/// the VP assist page MSR. A plain value, in `VMXState`.
public struct HyperVState: Equatable, Sendable {
    /// The machine offers Hyper-V's leaves and the VP assist page MSR.
    public var offered: Bool
    /// HV_X64_MSR_VP_ASSIST_PAGE as L1 wrote it: bit 0 enable, bits 11:1
    /// reserved (kept as written: TLFS "RsvdP"), bits 63:12 the page number.
    public private(set) var vpAssistPageMSR: UInt64 = 0

    public init(offered: Bool = false) { self.offered = offered }

    /// The VP assist page's address, nil while it is disabled.
    public var vpAssistPage: UInt64? { vpAssistPageMSR & 1 != 0 ? vpAssistPageMSR & ~0xfff : nil }

    /// RDMSR of a synthetic MSR; nil raises #GP (an MSR not offered).
    public func readMSR(_ index: UInt32) -> UInt64? {
        offered && index == HyperV.vpAssistPageMSR ? vpAssistPageMSR : nil
    }

    /// WRMSR of a synthetic MSR; false raises #GP: an MSR not offered, or
    /// enabling the VP assist page at a page that is not wholly RAM or lies
    /// at or above MAXPHYADDR (as KVM's Hyper-V emulation refuses it).
    /// Disabling always succeeds.
    public mutating func writeMSR(_ index: UInt32, _ value: UInt64, physicalAddressBits: Int,
                                  memory: some GuestMemoryAccess) -> Bool {
        guard offered, index == HyperV.vpAssistPageMSR else { return false }
        if value & 1 != 0 {
            let page = value & ~0xfff
            guard page >> UInt64(physicalAddressBits) == 0, memory.load(UInt8.self, at: page) != nil,
                  memory.load(UInt8.self, at: page + 0xfff) != nil else { return false }
        }
        vpAssistPageMSR = value
        return true
    }

    /// The eVMCS address that enlightened VM entry names, or nil when it is
    /// off: Hyper-V not offered, the VP assist page disabled or no longer
    /// RAM, or its "EnlightenVmEntry" byte zero. Read at every VMLAUNCH and
    /// VMRESUME, as L1 may change the page at any time.
    public func enlightenedVMCS(memory: some GuestMemoryAccess) -> UInt64? {
        guard offered, let page = vpAssistPage,
              let enabled = memory.load(UInt8.self, at: page + HyperV.VPAssistPage.enlightenVMEntryOffset), enabled != 0
        else { return nil }
        return memory.load(UInt64.self, at: page + HyperV.VPAssistPage.currentNestedVMCSOffset)
    }
}
