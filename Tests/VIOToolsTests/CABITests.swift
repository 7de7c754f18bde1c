import Foundation
import Testing

/// The C ABI from C: the examples and a misuse program, compiled with the system C compiler
/// against include/vio.h and libvio.so only, run against a real agent.
@Suite(.serialized)
struct CABITests {
    static let library = Tools.binDirectory + "/libvio.so"

    /// Compiles `source` with -Wall -Wextra -Werror; returns the binary path.
    static func compile(_ source: String) throws -> String {
        let out = Tools.scratchDirectory() + "/" + URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", Tools.repositoryRoot + "/include",
                       "-o", out, source, "-L", Tools.binDirectory, "-lvio", "-Wl,-rpath," + Tools.binDirectory]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CompileFailed(source: source) }
        return out
    }

    struct CompileFailed: Error { var source: String }

    static func example(_ name: String) throws -> String {
        try compile(Tools.repositoryRoot + "/examples/c/\(name).c")
    }

    func run(_ binary: String, _ arguments: [String], socket: String) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.environment = ["VIO_CONTROL_SOCKET": socket, "PATH": "/usr/bin:/bin"]
        let dir = Tools.scratchDirectory()
        FileManager.default.createFile(atPath: dir + "/o", contents: nil)
        FileManager.default.createFile(atPath: dir + "/e", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/o")
        p.standardError = FileHandle(forWritingAtPath: dir + "/e")
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(5_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        return (p.terminationStatus, Tools.contents(dir + "/o"), Tools.contents(dir + "/e"))
    }

    func background(_ binary: String, _ arguments: [String], socket: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.environment = ["VIO_CONTROL_SOCKET": socket]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library) && FileManager.default.fileExists(atPath: "/usr/bin/pkg-config"),
                   "skipped: needs libvio.so and pkg-config"))
    func pkgConfigFileBuildsAProgram() throws {
        // Lay out a PREFIX as `make install` does, from the template it uses.
        let prefix = Tools.scratchDirectory()
        let fm = FileManager.default
        for dir in ["lib/pkgconfig", "include"] { try fm.createDirectory(atPath: prefix + "/" + dir, withIntermediateDirectories: true) }
        try fm.copyItem(atPath: Self.library, toPath: prefix + "/lib/libvio.so")
        try fm.copyItem(atPath: Tools.repositoryRoot + "/include/vio.h", toPath: prefix + "/include/vio.h")
        let template = try String(contentsOfFile: Tools.repositoryRoot + "/scripts/vio.pc.in", encoding: .utf8)
        try template.replacingOccurrences(of: "@PREFIX@", with: prefix)
            .write(toFile: prefix + "/lib/pkgconfig/vio.pc", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "cc -std=c99 -Wall -Wextra -Werror -o \(prefix)/pp \(Tools.repositoryRoot)/examples/c/pingpong.c $(pkg-config --cflags --libs vio) && \(prefix)/pp"]
        p.environment = ["PKG_CONFIG_PATH": prefix + "/lib/pkgconfig", "PATH": "/usr/bin:/bin"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("usage:"), "the program built and loaded libvio: \(message)")
        #expect(p.terminationStatus == 2)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library) && FileManager.default.fileExists(atPath: "/usr/bin/nm"),
                   "skipped: needs libvio.so and nm"))
    func libraryExportsExactlyTheHeadersFunctions() throws {
        let header = try String(contentsOfFile: Tools.repositoryRoot + "/include/vio.h", encoding: .utf8)
        let declared = Set(header.split(separator: "\n").compactMap { line -> String? in
            guard !line.hasPrefix(" "), !line.hasPrefix("#"), !line.hasPrefix("typedef"), let open = line.firstIndex(of: "(") else { return nil }
            let name = line[..<open].split(whereSeparator: { $0 == " " || $0 == "*" }).last.map(String.init)
            return name?.hasPrefix("vio_") == true ? name : nil
        })
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nm")
        p.arguments = ["-D", "--defined-only", Self.library]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let exported = Set(text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count == 3 && fields[2].hasPrefix("vio_") ? String(fields[2]) : nil
        })
        #expect(declared.count == 28)
        #expect(exported == declared, "exported but not declared: \(exported.subtracting(declared)); declared but missing: \(declared.subtracting(exported))")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library), "skipped: libvio.so not built"))
    func misuseGivesDocumentedErrors() throws {
        let f = try FabricFixture.standard()
        let misuse = try Self.compile(Tools.repositoryRoot + "/Tests/VIOToolsTests/C/misuse.c")
        let (status, out, _) = try run(misuse, [], socket: f.socket)
        #expect(out.contains("misuse: 43 passed, 0 failed"), "\(out)")
        #expect(status == 0)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library), "skipped: libvio.so not built"))
    func pingPongSmallAndFragmented() throws {
        let f = try FabricFixture.standard()
        let pingpong = try Self.example("pingpong")
        for size in ["64", "3000000"] {
            let server = try background(pingpong, ["server", "db2"], socket: f.socket)
            usleep(200_000)
            let (status, out, err) = try run(pingpong, ["client", "db1", "db2", size == "64" ? "2000" : "5", size], socket: f.socket)
            #expect(status == 0, "\(out) \(err)")
            #expect(out.contains("ok"))
            server.waitUntilExit()
            #expect(server.terminationStatus == 0)
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library), "skipped: libvio.so not built"))
    func keyValueServerWithItsOwnEpollLoop() throws {
        let f = try FabricFixture.standard()
        let server = try background(try Self.example("kv_server"), ["db2", "2"], socket: f.socket)
        usleep(200_000)
        let client = try Self.example("kv_client")
        let (s1, o1, e1) = try run(client, ["db1", "db2", "SET a 1", "GET a", "GET b", "DEL a", "GET a"], socket: f.socket)
        #expect(s1 == 0, "\(e1)")
        #expect(o1 == "OK\nVALUE 1\nNOT_FOUND\nOK\nNOT_FOUND\n")
        let (s2, o2, _) = try run(client, ["db3", "db2", "SET x hello world", "GET x"], socket: f.socket)
        #expect(s2 == 0)
        #expect(o2 == "OK\nVALUE hello world\n")
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: library), "skipped: libvio.so not built"))
    func killNineOfThePeerGivesPeerGone() throws {
        let f = try FabricFixture.standard()
        let pingpong = try Self.example("pingpong")
        // A C server blocked in receive; its peer (a probe) is killed.
        let dir = Tools.scratchDirectory()
        FileManager.default.createFile(atPath: dir + "/e", contents: nil)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: pingpong)
        server.arguments = ["server", "db2"]
        server.environment = ["VIO_CONTROL_SOCKET": f.socket]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle(forWritingAtPath: dir + "/e")
        try server.run()
        usleep(200_000)
        let peer = try f.probe(["hold", "--as", "db1", "--peer", "db2"])
        #expect(peer.waitFor("ready"))
        peer.kill(SIGKILL)
        server.waitUntilExit()
        #expect(server.terminationStatus == 5, "pingpong exits 5 on VIO_EPEERGONE")
        #expect(Tools.contents(dir + "/e").contains("receive: peer gone (exited or detached)"))
    }
}
