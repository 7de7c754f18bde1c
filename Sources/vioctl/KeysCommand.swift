import ArgumentParser
import VIOLinux
import VIOSecurity
import VIOTopology

#if canImport(Glibc)
import Glibc
#endif

/// `vioctl keys`: the agents' identities for encrypted channels.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create and inspect agent keys (Ed25519) for encrypted channels.",
        subcommands: [Generate.self, Show.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create HOST's key pair: the private key goes to a file only its owner can read; the public key is printed as the line to paste under the host in the topology.",
            discussion: "Run it on the host itself, as the user vio-agent runs as. The file must not exist (keys are never overwritten).")

        @Argument(help: "The host, as named in the topology.") var host: String
        @Option(help: ArgumentHelp("Where to write the private key. Default: /etc/vio/keys/HOST.key.", valueName: "path"))
        var out: String?

        func run() throws {
            let path = out ?? Topology.defaultKeyFile(host: host)
            let parent = Directories.parent(of: path)
            if access(parent, F_OK) != 0 {
                do { try Directories.create(parent, mode: 0o700) } catch {
                    throw ValidationError("cannot create \(parent): \(error)")
                }
            }
            let key: [UInt8]
            do { key = try KeyFile.generate(at: path) } catch { throw ValidationError(error.description) }
            print("wrote the private key of '\(host)' to \(path) (mode 0600); keep it on \(host) only")
            print("paste under host '\(host)' in the topology:")
            print("    key: \(HostKey(bytes: key)!)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the topology line of an existing private key file (and check its permissions).")

        @Argument(help: "The private key file.") var file: String

        func run() throws {
            do { print("key: \(HostKey(bytes: try KeyFile.publicKey(at: file))!)") } catch {
                throw ValidationError(error.description)
            }
        }
    }
}
