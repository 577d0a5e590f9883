import ArgumentParser
import TraceFormat
import TraceReports
#if canImport(Glibc)
import Glibc
#endif

struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an experiment made of many guest runs.",
        subcommands: [PagingExperimentCommand.self])
}

/// `terrapin experiment paging` (docs/SHADOW.md): the MMU workloads as L2
/// under turtle with EPT-on-EPT, shadow-on-EPT and the identity map,
/// interleaved round by round; every run's trace is kept.
struct PagingExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paging",
        abstract: "Compare paging strategies: turtle's paging=ept, shadow and identity, and L0's lazy and eager EPT02.",
        discussion: """
            Runs mm-storm, ctx-storm (2, 8 and 64 address spaces), page-touch, pio-storm and compute as L2 \
            under turtle in each paging mode, and with EPT over turtle's scattered p2m (p2m=scatter, a \
            fragmented EPT12) under L0's lazy and eager EPT02 build policies (terrapin run --ept02), the modes \
            and workloads interleaved in every round. Each guest times its \
            own operations with RDTSC. Prints the TSC cycles per operation (median and a 95% bootstrap \
            interval over the rounds), the ratios shadow / ept and eager / lazy with their intervals, the \
            exits and EPT02 faults per operation from the traces, and writes \
            paging.json, paging.svg and every run's trace to the output directory.
            """)

    @Option(help: ArgumentHelp("Rounds (each runs every workload in every mode).", valueName: "n"))
    var rounds = 3

    @Flag(help: "Few operations per workload (for CI): the figures are noisier.")
    var fast = false

    @Option(help: ArgumentHelp("Directory for the traces, paging.json and paging.svg.", valueName: "dir"))
    var out = "out/experiment-paging"

    @Option(help: ArgumentHelp("Where turtle.elf and the workloads are (make -C Guests builds them).", valueName: "dir"))
    var guests = "Guests/build"

    @Flag(help: "Print the whole result as JSON instead of the tables.")
    var json = false

    func validate() throws {
        guard rounds >= 1, rounds <= 1000 else { throw ValidationError("--rounds must be from 1 to 1000") }
        guard !out.isEmpty else { throw ValidationError("--out needs a directory") }
        let needed = ["turtle"] + PagingExperiment.workloads(fast: fast).map(\.guest)
        for g in needed where access("\(guests)/\(g).elf", R_OK) != 0 {
            throw ValidationError("\(guests)/\(g).elf is missing: run `make -C Guests` (or pass --guests)")
        }
    }

    func run() throws {
        try makeDirectories(out)
        var experiment = PagingExperiment(rounds: rounds, fast: fast)
        let total = rounds * experiment.workloads.count * PagingExperiment.modes.count
        var done = 0
        for round in 1...rounds {
            for (w, workload) in experiment.workloads.enumerated() {
                for mode in PagingExperiment.modes {
                    done += 1
                    progress("\r[\(done)/\(total)] round \(round): \(workload.guest) \(workload.arguments), \(mode)      ")
                    let trace = "\(out)/\(workload.guest)-\(w)-\(mode)-\(round).trc"
                    let (status, output) = try spawn([selfPath(), "run", "\(guests)/turtle.elf", "--memory", "256M"]
                                                      + PagingExperiment.monitorOptions(mode)
                                                      + ["--append", "\(PagingExperiment.turtleOptions(mode)) prefix=off",
                                                         "--module", "\(guests)/\(workload.guest).elf \(workload.arguments)",
                                                         "--trace", trace], output: "\(out)/last-run.out")
                    guard status == 1 else {
                        progress("\n")
                        throw ExperimentError("\(workload.guest) \(workload.arguments) under \(mode) exited with \(status) (its output is in \(out)/last-run.out)")
                    }
                    var figures: [Double] = []
                    for row in workload.rows {
                        guard let v = PagingExperiment.figure(row.key, in: output), v > 0 else {
                            progress("\n")
                            throw ExperimentError("no '\(row.name)' figure in the output of \(workload.guest) under \(mode) (\(out)/last-run.out)")
                        }
                        figures.append(v)
                    }
                    var result = PagingExperiment.Run(workload: w, mode: mode, round: round, status: status, figures: figures, trace: trace)
                    result.count(try TraceReader(path: trace))
                    experiment.runs.append(result)
                }
            }
        }
        progress("\n")
        try write(experiment.json(), to: "\(out)/paging.json")
        try write(experiment.svg(), to: "\(out)/paging.svg")
        if json {
            print(experiment.json(), terminator: "")
        } else {
            print(experiment.text(), terminator: "")
            print("\nTraces, paging.json and paging.svg are in \(out)/")
        }
    }
}

/// A progress line on stderr, without a newline of its own.
private func progress(_ text: String) {
    var line = text
    line.withUTF8 { buf in _ = Glibc.write(2, buf.baseAddress, buf.count) }
}

struct ExperimentError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// This executable, to run each guest as `terrapin run`.
private func selfPath() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw ExperimentError("cannot find this executable (/proc/self/exe)") }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `mkdir -p`.
private func makeDirectories(_ path: String) throws {
    var at = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        at += part + "/"
        if mkdir(at, 0o755) != 0 && errno != EEXIST {
            throw ExperimentError("cannot create \(at): \(String(cString: strerror(errno)))")
        }
    }
}

private func write(_ text: String, to path: String) throws {
    guard let f = fopen(path, "w") else { throw ExperimentError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    let bytes = Array(text.utf8)
    guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw ExperimentError("cannot write \(path)") }
}

/// Runs `argv` with stdout and stderr into the file `output`; its status and what it wrote.
private func spawn(_ argv: [String], output: String) throws -> (Int32, String) {
    let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw ExperimentError("cannot write \(output): \(String(cString: strerror(errno)))") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fd, 1)
    posix_spawn_file_actions_adddup2(&actions, fd, 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
    close(fd)
    guard rc == 0 else { throw ExperimentError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw ExperimentError("waiting for \(argv[0]): \(String(cString: strerror(errno)))") }
    }
    let exited = status & 0x7f == 0
    let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    guard let f = fopen(output, "r") else { return (code, "") }
    defer { fclose(f) }
    var text = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n <= 0 { break }
        text += chunk[0..<n]
    }
    return (code, String(decoding: text, as: UTF8.self))
}
