#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Output helpers written against write(2): the stdio globals are not
// concurrency-safe in Swift 6, and Foundation is not needed for this.

func writeStdout(_ s: String) { writeFD(1, s) }

func printError(_ s: String) { writeFD(2, s + "\n") }

private func writeFD(_ fd: Int32, _ s: String) {
    var s = s
    s.withUTF8 { buf in
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

