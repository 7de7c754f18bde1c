import VIOLinux
import VIOTopology
import VIOWire

#if canImport(Glibc)
import Glibc
#endif

/// Decides whether a connection may attach as an instance.
struct Admission {
    let view: HostView
    let agentUID: UInt32

    /// Checks `request` from a process with `credentials`; returns the instance or the refusal.
    func admit(_ request: Attach, uid: UInt32, gid: UInt32, attachedBy: (String) -> Int32?) -> Result<Instance, ControlError> {
        guard let resolved = view.instances.first(where: { $0.instance.name == request.instance }) else {
            let known = view.instances.map(\.instance.name).joined(separator: ", ")
            return .failure(ControlError(.unknownInstance,
                "no instance '\(request.instance)' on host '\(view.host.name)'; this host's instances: \(known.isEmpty ? "none" : known)"))
        }
        let instance = resolved.instance
        let allowedUID = instance.uid ?? agentUID
        guard uid == allowedUID else {
            return .failure(ControlError(.notAllowed,
                "uid \(uid) may not attach as '\(instance.name)'; the topology allows uid \(allowedUID)\(instance.uid == nil ? " (the agent's own)" : "")"))
        }
        if let wanted = instance.gid, wanted != gid {
            return .failure(ControlError(.notAllowed, "gid \(gid) may not attach as '\(instance.name)'; the topology requires gid \(wanted)"))
        }
        if let file = instance.tokenFile {
            switch Result(catching: { () throws(TokenFile.Problem) in try TokenFile.read(file) }) {
            case .failure(let reason):
                return .failure(ControlError(.internalError, "cannot check the token of '\(instance.name)': \(reason)"))
            case .success(let expected):
                guard Self.constantTimeEqual(expected, request.token) else {
                    return .failure(ControlError(.badToken, "wrong token for instance '\(instance.name)'"))
                }
            }
        }
        if let pid = attachedBy(instance.name) {
            return .failure(ControlError(.alreadyAttached,
                "instance '\(instance.name)' is already attached by pid \(pid); one live attachment per instance"))
        }
        return .success(instance)
    }

    /// Compares without an early exit, so the time taken does not reveal how much matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}
