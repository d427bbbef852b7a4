#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The fuzz targets of every decoder that sees network bytes (see docs/fuzzing.md and scripts/fuzz.sh).
//
// Two builds of the same sources:
// - the normal `swift build` (no flags): a replay tool. `signal-fuzz TARGET FILE|DIR...` runs each input once
//   through the target (a crash reproducer, or a whole corpus as a regression check); `signal-fuzz --list`.
// - scripts/fuzz.sh builds it with `-DSIGNAL_FUZZ`, AddressSanitizer and libFuzzer's coverage instrumentation,
//   and links libFuzzer without its `main`: SwiftPM renames an executable's entry point (`signal_fuzz_main`,
//   with `--defsym main=…`), which clashes with libFuzzer's own `main`, so this `main` starts libFuzzer with
//   `LLVMFuzzerRunDriver`. The target comes from SIGNAL_FUZZ_TARGET (inherited by libFuzzer's child
//   processes) or from a first argument naming one.

#if SIGNAL_FUZZ
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// Set once in `main` before libFuzzer starts; read only on libFuzzer's thread.
    nonisolated(unsafe) var selectedTarget: FuzzTarget?

    func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        guard let selectedTarget else { return 0 }
        selectedTarget.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
        return 0
    }
#endif

@main
enum SignalFuzz {
    static func main() {
        var arguments = CommandLine.arguments
        if arguments.count > 1, arguments[1] == "--list" {
            for target in FuzzTargets.all { print("\(target.name)\t\(target.summary)") }
            return
        }
        #if SIGNAL_FUZZ
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            if arguments.count > 1, let target = FuzzTargets.named(arguments[1]) {
                setenv("SIGNAL_FUZZ_TARGET", target.name, 1)
                // Drop the target name: libFuzzer reads the rest.
                argv[1] = argv[0]
                argv = argv.advanced(by: 1)
                argc -= 1
            }
            guard let name = getenv("SIGNAL_FUZZ_TARGET").map({ String(cString: $0) }), let target = FuzzTargets.named(name)
            else {
                fail("set SIGNAL_FUZZ_TARGET or pass a target first: \(FuzzTargets.all.map(\.name).joined(separator: " "))")
            }
            selectedTarget = target
            exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOneInput($0, $1) })
        #else
            arguments.removeFirst()
            guard let name = arguments.first else {
                fail("usage: signal-fuzz TARGET FILE|DIR... (replays inputs), signal-fuzz --list")
            }
            guard let target = FuzzTargets.named(name) else {
                fail("unknown target \(name): \(FuzzTargets.all.map(\.name).joined(separator: " "))")
            }
            var count = 0
            for path in arguments.dropFirst() {
                for file in inputFiles(path) {
                    guard let bytes = readFile(file) else { fail("cannot read \(file)") }
                    bytes.withUnsafeBytes { target.run($0) }
                    count += 1
                }
            }
            print("\(target.name): \(count) inputs replayed, no crash")
        #endif
    }

    static func fail(_ message: String) -> Never {
        let line = "signal-fuzz: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(2)
    }

    /// `path` itself, or the regular files in it (not recursive), sorted.
    static func inputFiles(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [path] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name.hasPrefix(".") { continue }
            names.append(path + "/" + name)
        }
        return names.sorted()
    }

    static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count { break }
        }
        return bytes
    }
}
