/// Syntax checks for the addresses a topology names. Nothing here resolves DNS: the same
/// file is checked on machines that may not see each other's resolvers.
enum Addresses {
    static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber)
                && Int(part)! <= 255 && (part == "0" || part.first != "0")
        }
    }

    static func isIPv6(_ text: String) -> Bool {
        let groups = text.split(separator: ":", omittingEmptySubsequences: false)
        guard text.contains(":"), groups.count >= 3, groups.count <= 8 || (groups.count == 9 && text.contains("::")) else {
            return false
        }
        let compressions = text.components(separatedBy: "::").count - 1
        guard compressions <= 1 else { return false }
        if compressions == 0 && groups.count != 8 { return false }
        return groups.allSatisfy { g in g.count <= 4 && g.allSatisfy(\.isHexDigit) }
    }

    static func isDNSName(_ text: String) -> Bool {
        guard !text.isEmpty, text.count <= 253, !isAllNumericDots(text) else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    /// Digits and dots only: meant as IPv4, so a bad one must not pass as a DNS name.
    private static func isAllNumericDots(_ text: String) -> Bool {
        text.allSatisfy { $0 == "." || ($0.isASCII && $0.isNumber) }
    }

    static func isValidHost(_ text: String) -> Bool {
        isIPv4(text) || isIPv6(text) || isDNSName(text)
    }

    /// `1.2.3.4:80`, `[::1]:80`, `name:80` into address and port.
    static func splitHostPort(_ text: String) -> (String, UInt16)? {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
            guard isIPv6(String(host)) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            guard isIPv4(String(host)) || isDNSName(String(host)) else { return nil }
        }
        guard let number = UInt16(port), number > 0 else { return nil }
        return (String(host), number)
    }
}
