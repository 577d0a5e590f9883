import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A request to stop the run, process-wide: SIGINT or SIGTERM, or the
/// monitor's own (a broken output pipe). The signal handler kicks every vCPU
/// out of KVM_RUN; the run loop then ends the run and finishes its trace.
public enum StopRequest {
    /// Installs the handlers: SIGINT and SIGTERM ask to stop; SIGPIPE is
    /// ignored, so a write to a closed pipe fails with EPIPE instead of
    /// killing the process.
    public static func installHandlers() throws(KVMError) {
        for signal in [SIGINT, SIGTERM] {
            let rc = ckvm_install_stop_handler(signal)
            guard rc == 0 else { throw KVMError("sigaction for signal \(signal)", errno: -rc) }
        }
        let rc = ckvm_ignore_signal(SIGPIPE)
        guard rc == 0 else { throw KVMError("sigaction for SIGPIPE", errno: -rc) }
    }

    /// The signal that asked to stop first, if any.
    public static var signal: Int32? {
        let s = ckvm_stop_requested()
        return s == 0 ? nil : s
    }

    /// Asks to stop as `signal` would.
    public static func request(_ signal: Int32) { ckvm_request_stop(signal) }
}
