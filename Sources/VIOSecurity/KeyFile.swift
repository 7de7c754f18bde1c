internal import CVIOTLS

#if canImport(Glibc)
import Glibc
#endif

/// An agent's Ed25519 private key on disk (PEM, PKCS#8), the identity it proves to its peers.
/// The matching public key goes into the topology under the host.
public enum KeyFile {
    /// Creates a new key at `path` (mode 0600; the file must not exist) and returns its
    /// 32-byte public key.
    public static func generate(at path: String) throws(SecurityError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: Int(VIO_TLS_KEY_BYTES))
        var err = [CChar](repeating: 0, count: 256)
        guard vio_tls_generate_key(path, &key, &err, err.count) == 0 else {
            throw SecurityError(text(err))
        }
        return key
    }

    /// The public key of the private key at `path`, after checking who may read the file.
    public static func publicKey(at path: String) throws(SecurityError) -> [UInt8] {
        try checkPermissions(path)
        var key = [UInt8](repeating: 0, count: Int(VIO_TLS_KEY_BYTES))
        var err = [CChar](repeating: 0, count: 256)
        guard vio_tls_read_public_key(path, &key, &err, err.count) == 0 else { throw SecurityError(text(err)) }
        return key
    }

    /// Refuses a key file that anyone but its owner can read or write, or that this process's
    /// user does not own: a private key others can read is no longer private.
    public static func checkPermissions(_ path: String) throws(SecurityError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            throw SecurityError("cannot read the key file \(path): \(reason); create one with `vioctl keys generate HOST --out \(path)`")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw SecurityError("the key file \(path) is not a regular file") }
        guard info.st_mode & 0o077 == 0 else {
            throw SecurityError("the key file \(path) is readable or writable by others (mode \(String(info.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`")
        }
        guard info.st_uid == geteuid() else {
            throw SecurityError("the key file \(path) belongs to uid \(info.st_uid), not to this agent's uid \(geteuid()); run `chown \(geteuid()) \(path)`")
        }
    }

    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
