import VIO
import VIOLinux

#if canImport(Glibc)
import Glibc
#endif

@_cdecl("vio_abi_version")
public func vio_abi_version() -> Int32 { 1 }

@_cdecl("vio_version")
public func vio_version() -> Int32 { 100 }

private let errorNames: [Int32: StaticString] = [
    0: "success", -1: "invalid argument", -2: "would block", -3: "timed out",
    -4: "peer closed the link", -5: "peer gone (exited or detached)", -6: "corrupt ring (link closed)",
    -7: "message too large or buffer too small", -8: "link closed by this end", -9: "refused by the agent",
    -10: "agent unreachable or gone", -11: "protocol violation", -12: "system call failed",
    -13: "invalid use", -14: "peer host down", -15: "cancelled", -16: "peer not responding (ring full and unread)",
    -17: "link removed from the topology",
]

@_cdecl("vio_strerror")
public func vio_strerror(_ code: Int32) -> UnsafePointer<CChar> {
    let name: StaticString = errorNames[code] ?? "unknown error code"
    return UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("vio_last_error")
public func vio_last_error() -> UnsafePointer<CChar> { LastError.pointer }

@_cdecl("vio_attach")
public func vio_attach(_ instance: UnsafePointer<CChar>?, _ socket: UnsafePointer<CChar>?,
                       _ tokenFile: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let instance, let out else { return Code.invalid("vio_attach: instance and out are required") }
    let name = String(cString: instance)
    let path = socket.map { String(cString: $0) }
    let result: Result<VIOClient, VIOError>
    if let tokenFile {
        let file = String(cString: tokenFile)
        result = Result { () throws(VIOError) in try VIOClient.attach(as: name, socketPath: path, tokenFile: file) }
    } else {
        result = Result { () throws(VIOError) in try VIOClient.attach(as: name, socketPath: path) }
    }
    switch result {
    case .success(let client):
        out.pointee = OpaquePointer(Unmanaged.passRetained(ClientHandle(client)).toOpaque())
        LastError.clear()
        return Code.ok
    case .failure(let error):
        out.pointee = nil
        return Code.of(error)
    }
}

@_cdecl("vio_detach")
public func vio_detach(_ client: OpaquePointer?) {
    guard let client else { return }
    Unmanaged<ClientHandle>.fromOpaque(UnsafeRawPointer(client)).release()
}

@_cdecl("vio_client_fd")
public func vio_client_fd(_ client: OpaquePointer?) -> Int32 {
    guard let client else { return Code.invalid("vio_client_fd: NULL client") }
    return client.client.client.controlDescriptor
}

private func newLink(_ result: Result<Link, VIOError>, _ out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
    switch result {
    case .success(let link):
        out.pointee = OpaquePointer(Unmanaged.passRetained(LinkHandle(link)).toOpaque())
        LastError.clear()
        return Code.ok
    case .failure(let error):
        out.pointee = nil
        return Code.of(error)
    }
}

@_cdecl("vio_open_link")
public func vio_open_link(_ client: OpaquePointer?, _ peer: UnsafePointer<CChar>?, _ timeoutMs: Int32,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let client, let peer, let out else { return Code.invalid("vio_open_link: client, peer and out are required") }
    let c = client.client.client, name = String(cString: peer)
    return newLink(Result { () throws(VIOError) in try c.openLink(to: name, timeout: duration(timeoutMs)) }, out)
}

@_cdecl("vio_accept_link")
public func vio_accept_link(_ client: OpaquePointer?, _ timeoutMs: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let client, let out else { return Code.invalid("vio_accept_link: client and out are required") }
    let c = client.client.client
    return newLink(Result { () throws(VIOError) in try c.acceptLink(timeout: duration(timeoutMs)) }, out)
}
