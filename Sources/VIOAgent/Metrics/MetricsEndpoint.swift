import VIOLinux

/// Serves `GET /metrics` (Prometheus' text exposition format) over HTTP/1.x on the agent's
/// loop: one response per connection, then the connection closes. Nothing else is served. A
/// request is read up to its blank line (at most 8 KiB); at most 16 connections are open at a
/// time (a seventeenth drops the oldest that has not sent its request, else the oldest), so a
/// client that connects and says nothing costs a socket, not the agent.
final class MetricsEndpoint {
    private final class Listener {
        let socket: TCPSocket
        init(_ socket: consuming TCPSocket) { self.socket = socket }
    }

    private final class Connection {
        let socket: TCPSocket
        var request: [UInt8] = []
        var response: [UInt8] = []
        var written = 0
        var registration: Registration?
        init(_ socket: consuming TCPSocket) { self.socket = socket }
    }

    static let maximumRequest = 8192
    static let maximumConnections = 16

    private let listener: Listener
    private unowned let loop: EventLoop
    private let render: () -> [UInt8]
    /// Open connections, oldest first.
    private var connections: [Connection] = []
    /// Where it listens, for logs.
    let address: String

    /// Listens on `address`:`port`; `render` makes the metrics text at each scrape.
    init(address: String, port: UInt16, loop: EventLoop, render: @escaping () -> [UInt8]) throws(SystemError) {
        let resolved = try TCPSocket.resolve(address, port: port)
        listener = Listener(try TCPSocket.listen(on: resolved))
        self.address = "\(resolved)"
        self.loop = loop
        self.render = render
        try loop.register(listener.socket.fd.rawValue) { [unowned self] _ in self.acceptAll() }
    }

    private func acceptAll() {
        while true {
            var peer = TCPSocket.Address()
            // Out of descriptors, the socket sheds the connection itself and returns nil.
            guard let socket = (try? listener.socket.accept(peer: &peer)) ?? nil else { return }
            let connection = Connection(socket)
            // Full: the oldest that has not asked for anything yet goes first, so connections
            // that only connect cannot cut off a scrape being written.
            if connections.count >= Self.maximumConnections,
               let victim = connections.first(where: { $0.response.isEmpty }) ?? connections.first {
                close(victim)
            }
            do {
                connection.registration = try loop.register(connection.socket.fd.rawValue) { [unowned self, unowned connection] event in
                    self.serve(connection, event)
                }
                connections.append(connection)
            } catch {
                continue
            }
        }
    }

    private func serve(_ connection: Connection, _ event: Epoll.Event) {
        if connection.response.isEmpty {
            guard readRequest(connection) else { return }
        }
        writeResponse(connection)
    }

    /// Reads what arrived; true once the request is complete and its response is ready.
    private func readRequest(_ c: Connection) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let n: Int?
            do { n = try buffer.withUnsafeMutableBytes { try c.socket.read(into: $0) } } catch {
                close(c)
                return false
            }
            guard let n else { return false }
            if n == 0 {
                close(c)
                return false
            }
            c.request += buffer[..<n]
            if let end = Self.headerEnd(c.request) {
                c.response = respond(to: Array(c.request[..<end]))
                return true
            }
            if c.request.count > Self.maximumRequest {
                c.response = Self.response(431, "Request Header Fields Too Large", Array("request too large\n".utf8))
                return true
            }
        }
    }

    private static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 3..<bytes.count where bytes[i] == 10 && bytes[i - 1] == 13 && bytes[i - 2] == 10 && bytes[i - 3] == 13 {
            return i + 1
        }
        return nil
    }

    /// The response to a request's head.
    private func respond(to head: [UInt8]) -> [UInt8] {
        let line = head.prefix { $0 != 13 && $0 != 10 }.split(separator: 32, omittingEmptySubsequences: true)
        guard line.count == 3, line[2].starts(with: Array("HTTP/1.".utf8)) else {
            return Self.response(400, "Bad Request", Array("malformed request line\n".utf8))
        }
        let head = line[0].elementsEqual("HEAD".utf8)
        // A HEAD reply has the headers of the GET one and no body.
        func reply(_ code: Int, _ reason: String, _ body: [UInt8], type: String = "text/plain; charset=utf-8") -> [UInt8] {
            Self.response(code, reason, head ? [] : body, type: type, length: body.count)
        }
        guard line[0].elementsEqual("GET".utf8) || head else {
            return reply(405, "Method Not Allowed", Array("only GET /metrics is served\n".utf8))
        }
        let path = line[1].prefix { $0 != UInt8(ascii: "?") }
        guard path.elementsEqual("/metrics".utf8) else {
            return reply(404, "Not Found", Array("only GET /metrics is served\n".utf8))
        }
        return reply(200, "OK", render(), type: "text/plain; version=0.0.4; charset=utf-8")
    }

    private static func response(_ code: Int, _ reason: String, _ body: [UInt8], type: String = "text/plain; charset=utf-8",
                                 length: Int? = nil) -> [UInt8] {
        Array("HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(length ?? body.count)\r\nConnection: close\r\n\r\n".utf8) + body
    }

    private func writeResponse(_ c: Connection) {
        while c.written < c.response.count {
            let n: Int?
            do {
                n = try c.response.withUnsafeBytes { try c.socket.write(UnsafeRawBufferPointer(rebasing: $0[c.written...])) }
            } catch {
                close(c)
                return
            }
            guard let n else {
                // The socket is full: go on when it is writable, and only then (the request is
                // read: more input or a half-close must not wake the loop meanwhile).
                if let registration = c.registration, (try? loop.watch(registration, readable: false, writable: true)) == nil { close(c) }
                return
            }
            c.written += n
        }
        close(c)
    }

    private func close(_ c: Connection) {
        if let registration = c.registration { loop.unregister(registration) }
        c.registration = nil
        try? c.socket.shutdown()
        connections.removeAll { $0 === c }
    }
}
