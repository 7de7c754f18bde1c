import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

/// Runs a data-path call and maps its typed error to a C code.
@inline(__always)
private func code(_ body: () throws(LinkError) -> Void) -> Int32 {
    do {
        try body()
        return Code.ok
    } catch {
        return Code.of(error)
    }
}

@_cdecl("vio_link_close")
public func vio_link_close(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_link_close: NULL link") }
    let h = link.link
    guard !h.closed else {
        LastError.set("vio_link_close: the link is already closed")
        return Code.closed
    }
    h.closed = true
    h.link.close()
    return Code.ok
}

@_cdecl("vio_link_release")
public func vio_link_release(_ link: OpaquePointer?) {
    guard let link else { return }
    let h = Unmanaged<LinkHandle>.fromOpaque(UnsafeRawPointer(link)).takeRetainedValue()
    if !h.closed { h.link.close() }
}

@_cdecl("vio_link_peer")
public func vio_link_peer(_ link: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let link else { return nil }
    return UnsafePointer(link.link.peer)
}

@_cdecl("vio_link_max_message")
public func vio_link_max_message(_ link: OpaquePointer?) -> Int { link.map { $0.link.link.region.maxMessage } ?? 0 }

@_cdecl("vio_link_max_claim")
public func vio_link_max_claim(_ link: OpaquePointer?) -> Int { link.map { $0.link.link.maximumClaim } ?? 0 }

@_cdecl("vio_link_set_wait")
public func vio_link_set_wait(_ link: OpaquePointer?, _ mode: Int32) -> Int32 {
    guard let link else { return Code.invalid("vio_link_set_wait: NULL link") }
    switch mode {
    case 0: link.link.link.waitPolicy = .busyPoll
    case 1: link.link.link.waitPolicy = .default
    case 2: link.link.link.waitPolicy = .sleep
    default: return Code.invalid("vio_link_set_wait: mode \(mode) is not VIO_WAIT_BUSY, VIO_WAIT_SPIN or VIO_WAIT_SLEEP")
    }
    return Code.ok
}

/// Runs `body` with the link's handle borrowed (no reference counting on the hot path), or
/// returns the code for a NULL or closed link.
@inline(__always)
private func withOpenLink(_ link: OpaquePointer?, _ call: StaticString, _ body: (LinkHandle) -> Int32) -> Int32 {
    guard let link else { return Code.invalid("\(call): NULL link") }
    return Unmanaged<LinkHandle>.fromOpaque(UnsafeRawPointer(link))._withUnsafeGuaranteedRef { h in
        if h.closed {
            LastError.set("\(call): the link is closed")
            return Code.closed
        }
        return body(h)
    }
}

@_cdecl("vio_send")
public func vio_send(_ link: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: Int, _ timeoutMs: Int32) -> Int32 {
    withOpenLink(link, "vio_send") { h in
        guard data != nil || length == 0 else { return Code.invalid("vio_send: NULL data with a non-zero length") }
        return code { () throws(LinkError) in
            try h.link.send(UnsafeRawBufferPointer(start: data, count: length), timeout: duration(timeoutMs))
        }
    }
}

@_cdecl("vio_claim")
public func vio_claim(_ link: OpaquePointer?, _ length: Int, _ timeoutMs: Int32,
                      _ buffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    withOpenLink(link, "vio_claim") { h in
        guard let buffer else { return Code.invalid("vio_claim: NULL buffer pointer") }
        return code { () throws(LinkError) in
            buffer.pointee = try h.link.claim(length, timeout: duration(timeoutMs)).baseAddress
        }
    }
}

@_cdecl("vio_commit")
public func vio_commit(_ link: OpaquePointer?, _ length: Int) -> Int32 {
    withOpenLink(link, "vio_commit") { h in code { () throws(LinkError) in try h.link.commit(length) } }
}

@_cdecl("vio_abort")
public func vio_abort(_ link: OpaquePointer?) -> Int32 {
    withOpenLink(link, "vio_abort") { h in
        h.link.abort()
        return Code.ok
    }
}

/// The message to hand out next: the pending one, or a new one.
private func next(_ h: LinkHandle, _ timeoutMs: Int32) -> Result<LinkEndpoint.PendingMessage, LinkError> {
    if let pending = h.pending { return .success(pending) }
    return Result { () throws(LinkError) in try h.link.nextMessage(timeout: duration(timeoutMs)) }
}

@_cdecl("vio_recv")
public func vio_recv(_ link: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int,
                     _ length: UnsafeMutablePointer<Int>?, _ timeoutMs: Int32) -> Int32 {
    withOpenLink(link, "vio_recv") { h in
        guard let length else { return Code.invalid("vio_recv: NULL length pointer") }
        guard buffer != nil || capacity == 0 else { return Code.invalid("vio_recv: NULL buffer with a non-zero capacity") }
        guard !h.pendingIsZeroCopy else {
            LastError.set("vio_recv: call vio_recv_done for the zero-copy message first")
            return Code.misuse
        }
        switch next(h, timeoutMs) {
        case .failure(let e): return Code.of(e)
        case .success(let message):
            length.pointee = message.bytes.count
            guard message.bytes.count <= capacity else {
                h.pending = message  // kept for the next call with a larger buffer
                LastError.set("vio_recv: the message is \(message.bytes.count) bytes, the buffer \(capacity)")
                return Code.messageSize
            }
            if let source = message.bytes.baseAddress, let buffer { buffer.copyMemory(from: source, byteCount: message.bytes.count) }
            h.pending = nil
            h.link.finishMessage(message)
            return Code.ok
        }
    }
}

@_cdecl("vio_recv_zc")
public func vio_recv_zc(_ link: OpaquePointer?, _ data: UnsafeMutablePointer<UnsafeRawPointer?>?,
                        _ length: UnsafeMutablePointer<Int>?, _ timeoutMs: Int32) -> Int32 {
    withOpenLink(link, "vio_recv_zc") { h in
        guard let data, let length else { return Code.invalid("vio_recv_zc: NULL data or length pointer") }
        guard !h.pendingIsZeroCopy else {
            LastError.set("vio_recv_zc: call vio_recv_done for the previous message first")
            return Code.misuse
        }
        switch next(h, timeoutMs) {
        case .failure(let e): return Code.of(e)
        case .success(let message):
            h.pending = message
            h.pendingIsZeroCopy = true
            data.pointee = message.bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)
            length.pointee = message.bytes.count
            return Code.ok
        }
    }
}

@_cdecl("vio_recv_done")
public func vio_recv_done(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_recv_done: NULL link") }
    let h = link.link
    guard h.pendingIsZeroCopy, let message = h.pending else {
        LastError.set("vio_recv_done without vio_recv_zc")
        return Code.misuse
    }
    h.pending = nil
    h.pendingIsZeroCopy = false
    h.link.finishMessage(message)
    return Code.ok
}

@_cdecl("vio_link_fd")
public func vio_link_fd(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_link_fd: NULL link") }
    return link.link.link.dataDoorbellDescriptor
}

@_cdecl("vio_link_arm")
public func vio_link_arm(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_link_arm: NULL link") }
    let h = link.link
    if h.pending != nil { return 0 }
    return h.link.armForSleep() ? 1 : 0
}

@_cdecl("vio_link_disarm")
public func vio_link_disarm(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_link_disarm: NULL link") }
    link.link.link.disarmAfterSleep(woken: true)
    return Code.ok
}

@_cdecl("vio_wait")
public func vio_wait(_ links: UnsafePointer<OpaquePointer?>?, _ count: Int32, _ timeoutMs: Int32,
                     _ ready: UnsafeMutablePointer<Int32>?) -> Int32 {
    guard let links, let ready, count > 0 else { return Code.invalid("vio_wait: links and ready are required, n > 0") }
    var handles: [LinkHandle] = []
    for i in 0..<Int(count) {
        guard let l = links[i] else { return Code.invalid("vio_wait: links[\(i)] is NULL") }
        handles.append(l.link)
    }
    let deadline = Deadline(timeout: duration(timeoutMs))
    while true {
        var n: Int32 = 0
        for (i, h) in handles.enumerated() {
            let readable = h.pending != nil || h.link.isReadable
            ready[i] = readable ? 1 : 0
            if readable { n += 1 }
        }
        if n > 0 || deadline.isImmediate { return n }
        // Arm all, re-check, then one poll(2) over the doorbells.
        var armed: [Int] = []
        var early = false
        for (i, h) in handles.enumerated() {
            if h.link.armForSleep() { armed.append(i) } else { early = true; break }
        }
        if !early {
            var fds = handles.map { pollfd(fd: $0.link.dataDoorbellDescriptor, events: Int16(POLLIN), revents: 0) }
            let rc = poll(&fds, nfds_t(fds.count), deadline.remainingMilliseconds)
            for i in armed { handles[i].link.disarmAfterSleep(woken: fds[i].revents != 0) }
            if rc < 0 && errno != EINTR {
                LastError.set("poll: \(String(cString: strerror(errno)))")
                return Code.system
            }
            if rc == 0 && deadline.hasPassed {
                for i in handles.indices { ready[i] = 0 }
                return 0
            }
        } else {
            for i in armed { handles[i].link.disarmAfterSleep(woken: false) }
        }
    }
}

@_cdecl("vio_link_state")
public func vio_link_state(_ link: OpaquePointer?) -> Int32 {
    guard let link else { return Code.invalid("vio_link_state: NULL link") }
    let h = link.link
    if h.closed { return Code.closed }
    guard let error = h.link.stateError else { return Code.ok }
    return Code.of(error)
}

/// Mirrors `vio_counters` in vio.h (eight uint64_t, in order).
@_cdecl("vio_link_counters")
public func vio_link_counters(_ link: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guard let link, let out else { return Code.invalid("vio_link_counters: link and out are required") }
    let (sent, received) = link.link.link.counters
    let values = [sent.messagesSent, sent.bytesSent, sent.wakeupsSent, sent.fullStalls,
                  received.messagesReceived, received.bytesReceived, received.wakeupsReceived, received.errors]
    for (i, v) in values.enumerated() { out[i] = v }
    return Code.ok
}
