import Foundation

/// How the channels between two hosts are protected.
public enum Security: String, Sendable, Equatable, CaseIterable {
    /// TLS 1.3, both agents authenticated by their keys: the default.
    case tls
    /// No encryption or authentication: only for a fabric the operator trusts (e.g. RDMA
    /// inside one rack), chosen per host pair.
    case plaintext
}

/// A host's public key as written in the topology: `ed25519:` and the 32 key bytes in base64.
public struct HostKey: Sendable, Equatable, CustomStringConvertible {
    /// The 32 bytes of the Ed25519 public key.
    public let bytes: [UInt8]

    /// The key from its 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Parses `ed25519:BASE64`.
    public init?(text: String) {
        guard text.hasPrefix(Self.prefix), let data = Data(base64Encoded: String(text.dropFirst(Self.prefix.count))),
              data.count == 32 else { return nil }
        bytes = Array(data)
    }

    /// The topology form, `ed25519:BASE64`.
    public var description: String { Self.prefix + Data(bytes).base64EncodedString() }

    static let prefix = "ed25519:"
}

/// A setting for one pair of hosts, from the topology's `host_pairs` section.
public struct HostPair: Sendable, Equatable {
    /// The two hosts, in declaration order.
    public var hosts: (String, String)
    /// How their channels are protected.
    public var security: Security
    /// Where the pair was declared.
    public var location: SourceLocation

    /// Whether this entry is about `a` and `b`, in either order.
    public func joins(_ a: String, _ b: String) -> Bool {
        (hosts.0 == a && hosts.1 == b) || (hosts.0 == b && hosts.1 == a)
    }

    public static func == (lhs: HostPair, rhs: HostPair) -> Bool {
        lhs.hosts == rhs.hosts && lhs.security == rhs.security && lhs.location == rhs.location
    }
}

extension Topology {
    /// How the channels between hosts `a` and `b` are protected: a `host_pairs` entry, else
    /// the defaults (TLS unless the file says otherwise).
    public func security(between a: String, _ b: String) -> Security {
        hostPairs.last { $0.joins(a, b) }?.security ?? defaults.security
    }

    /// The private key file of `host` when the topology names none.
    public static func defaultKeyFile(host: String) -> String { "/etc/vio/keys/\(host).key" }
}
