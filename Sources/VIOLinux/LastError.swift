import CVIOShim

/// The calling thread's last failure description, for C callers (`vio_last_error`).
public enum LastError {
    /// Records `message` for the calling thread.
    public static func set(_ message: String) { vio_shim_set_last_error(message) }
    /// Clears it.
    public static func clear() { vio_shim_set_last_error(nil) }
    /// The calling thread's buffer (a C string owned by the thread).
    public static var pointer: UnsafePointer<CChar> { vio_shim_last_error() }
}
