import ArgumentParser
import SQLWire
import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// `vio-sql-server`: an in-memory SQLite database served to each attached client over its VIO
/// link, and to TCP clients on a socket each (examples/sql/README.md).
struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vio-sql-server",
        abstract: "Serve an in-memory SQLite database over VIO links (and, optionally, TCP).")

    @Option(name: .customLong("as"), help: "The instance to attach as.")
    var instance = "sqlserver"

    @Option(help: "The agent's control socket (default: $VIO_CONTROL_SOCKET or the only one in the runtime directory).")
    var socket: String?

    @Option(help: "Also serve TCP clients on ADDRESS:PORT (one socket per client, the usual way).")
    var tcpListen: String?

    @Option(help: "The in-memory database's name (connections of this process share it).")
    var database = "vio-sql"

    func run() throws {
        // The first connection keeps the in-memory database alive while the server runs.
        let anchor = try Database(name: database)
        let client = try VIOClient.attach(as: instance, socketPath: socket)
        if let tcpListen {
            guard let (host, port) = TCPSocket.split(hostPort: tcpListen) else { throw ValidationError("--tcp-listen must be ADDRESS:PORT") }
            let listener = try TCPSocket.listen(on: TCPSocket.resolve(host, port: port))
            // The accepting thread owns the listener from here.
            let fd = try listener.fd.duplicate().take()
            let name = database
            spawnThread { acceptTCP(listenerDescriptor: fd, database: name) }
        }
        StandardStreams.out("ready: serving '\(database)' as \(instance)\(tcpListen.map { " and on tcp \($0)" } ?? "")\n")
        var lastAcceptError: VIOError?
        while true {
            let link: Link
            do { link = try client.acceptLink(timeout: nil) } catch {
                // The agent went away: libvio attaches again by itself; links open keep working.
                if error != lastAcceptError { log("waiting for links: \(error)") }
                lastAcceptError = error
                usleep(100_000)
                continue
            }
            lastAcceptError = nil
            let name = database
            spawnThread { serve(link: link, database: name) }
        }
        _ = anchor
    }
}

/// One client's session, over its link or its TCP socket: requests until the transport
/// fails; an open transaction of a client that died (or whose host went down) is rolled back
/// at once.
func serve(_ client: String, over path: String, database name: String, replyLimit: Int,
           receive: () throws -> [UInt8], send: ([UInt8]) throws -> Void, abandoned: @escaping () -> Bool) {
    let database: Database
    do { database = try Database(name: name) } catch {
        log("client '\(client)': \(error)")
        return
    }
    log("client '\(client)' connected over \(path)")
    while true {
        let request: [UInt8]
        do { request = try receive() } catch {
            ended(client, database, "\(error)")
            return
        }
        let reply: SQLReply
        do {
            reply = database.execute(try SQLRequest(decoding: request), replyLimit: replyLimit, abandoned: abandoned)
        } catch {
            reply = .error("malformed request: \(error)")
        }
        do { try send(reply.encoded()) } catch {
            ended(client, database, "\(error)")
            return
        }
    }
}

/// A client over its link.
func serve(link: Link, database name: String) {
    serve(link.peerName, over: "vio", database: name, replyLimit: link.region.maxMessage,
          receive: { try link.receive() }, send: { try link.send($0) }, abandoned: { link.stateError != nil })
}

/// TCP clients: a thread each, as a server without VIO would do it.
func acceptTCP(listenerDescriptor fd: Int32, database name: String) {
    let listener = TCPSocket(OwnedFileDescriptor(taking: fd))
    while true {
        _ = try? Poll.readable(fd, timeoutMilliseconds: -1)
        var peer = TCPSocket.Address()
        guard let accepted = try? listener.accept(peer: &peer) else { continue }
        guard let connection = try? FramedTCP(accepted: accepted) else { continue }
        let who = "\(peer)"
        spawnThread {
            serve(who, over: "tcp", database: name, replyLimit: FramedTCP.maximumMessage,
                  receive: { try connection.receive() }, send: { try connection.send($0) }, abandoned: { connection.peerHungUp })
        }
    }
}

/// A client's session ended: its open transaction, if any, is rolled back now.
func ended(_ peer: String, _ database: Database, _ why: String) {
    let detected = MonotonicClock.nanoseconds()
    if database.inTransaction {
        database.rollback()
        let micros = (MonotonicClock.nanoseconds() - detected) / 1000
        log("client '\(peer)' gone (\(why)): rolled back its open transaction \(micros) us after its end was seen")
    } else {
        log("client '\(peer)' gone (\(why))")
    }
}

func log(_ line: String) { StandardStreams.error("vio-sql-server: " + line + "\n") }

Server.main()
