import Foundation
import Testing
import VIO

/// The async variants with a real agent: tasks suspend instead of blocking threads.
@Suite(.serialized)
struct AsyncClientTests {
    func pair(_ f: FabricFixture, _ a: String = "db1", _ b: String = "db2") throws -> (VIOClient, VIOClient, Link, Link) {
        let ca = try VIOClient.attach(as: a, socketPath: f.socket)
        let cb = try VIOClient.attach(as: b, socketPath: f.socket)
        let la = try ca.openLink(to: b)
        let lb = try cb.acceptLink(timeout: .seconds(5))
        return (ca, cb, la, lb)
    }

    /// Fills the ring with the blocking call (a synchronous context picks that overload).
    func fill(_ link: Link) {
        while (try? link.send([UInt8](repeating: 0, count: 500), timeout: .zero)) != nil {}
    }

    @Test func receiveSuspendsUntilAMessageArrives() async throws {
        let f = try FabricFixture.standard()
        let (ca, cb, a, b) = try pair(f)
        defer { withExtendedLifetime((ca, cb)) {} }
        let sender = Thread {
            usleep(50_000)
            try? a.send(Array("late".utf8))
        }
        sender.start()
        let message: [UInt8] = try await b.receive(timeout: .seconds(10))
        #expect(message == Array("late".utf8))
        #expect(b.counters.received.wakeupsReceived >= 1, "the task slept on the doorbell")
    }

    @Test func receiveTimesOutAndWouldBlock() async throws {
        let f = try FabricFixture.standard()
        let (ca, cb, a, b) = try pair(f)
        defer { withExtendedLifetime((ca, cb, a)) {} }  // a released link closes
        let start = Date()
        await #expect(throws: LinkError.timedOut) { () async throws -> Void in _ = try await b.receive(timeout: .milliseconds(50)) }
        #expect(Date().timeIntervalSince(start) >= 0.045)
        await #expect(throws: LinkError.wouldBlock) { () async throws -> Void in _ = try await b.receive(timeout: .zero) }
    }

    @Test func manyTasksShareOneReactor() async throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let db3 = try VIOClient.attach(as: "db3", socketPath: f.socket)
        let a = try db1.openLink(to: "db2"), b = try db2.openLink(to: "db1")
        let c = try db3.openLink(to: "db2"), d = try db2.openLink(to: "db3")
        let replies = Thread {
            usleep(30_000)
            try? a.send([1])
            try? c.send([2])
        }
        replies.start()
        async let x: [UInt8] = b.receive(timeout: .seconds(10))
        async let y: [UInt8] = d.receive(timeout: .seconds(10))
        let (rx, ry) = try await (x, y)
        #expect(rx == [1] && ry == [2])
    }

    @Test func sendSuspendsWhileTheRingIsFull() async throws {
        let f = try FabricFixture.standard()
        let (ca, cb, a, b) = try pair(f, "db2", "db3")  // 4 KiB rings
        defer { withExtendedLifetime((ca, cb)) {} }
        fill(a)
        let reader = Thread {
            usleep(50_000)
            while (try? b.receive(timeout: .milliseconds(200))) != nil {}
        }
        reader.start()
        try await a.send([UInt8](repeating: 7, count: 500), timeout: .seconds(10))
        #expect(a.counters.sent.fullStalls >= 1)
    }

    @Test func acceptSuspendsUntilAPeerOpens() async throws {
        let f = try FabricFixture.standard()
        let db1 = try VIOClient.attach(as: "db1", socketPath: f.socket)
        let db2 = try VIOClient.attach(as: "db2", socketPath: f.socket)
        let opener = Thread {
            usleep(50_000)
            _ = try? db1.openLink(to: "db2")
        }
        opener.start()
        let link = try await db2.acceptLink(timeout: .seconds(10))
        #expect(link.peerName == "db1")
    }

    @Test func cancellationEndsTheWait() async throws {
        let f = try FabricFixture.standard()
        let (ca, cb, a, b) = try pair(f)
        defer { withExtendedLifetime((ca, cb, a)) {} }
        let task = Task { () async throws -> [UInt8] in try await b.receive(timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: LinkError.cancelled) { () async throws -> Void in _ = try await task.value }
    }
}
