import Foundation
import Testing
@testable import VIOTopology

struct ValidTopologyTests {
    static let samples = RepositoryPaths.files(in: RepositoryPaths.topologies, ending: ".yaml")

    @Test func theThreeSamplesExist() {
        let names = Self.samples.map { ($0 as NSString).lastPathComponent }
        #expect(names.contains("single-host.yaml"))
        #expect(names.contains("two-hosts.yaml"))
        #expect(names.contains("four-hosts.yaml"))
    }

    @Test(arguments: samples)
    func sampleParsesWithoutDiagnostics(path: String) throws {
        let (t, warnings) = try TopologyLoader.load(path: path)
        #expect(warnings.isEmpty)
        #expect(!t.hosts.isEmpty)
        // Every host's view resolves, and every link appears in the views of its hosts.
        for host in t.hosts {
            #expect(t.view(for: host.name, controlSocket: "/tmp/x.sock") != nil)
        }
    }

    @Test func embeddedTopologyIsTheSingleHostSample() throws {
        let file = try String(contentsOfFile: RepositoryPaths.topologies + "/single-host.yaml", encoding: .utf8)
        #expect(EmbeddedTopology.text == file)
        let (t, _) = try TopologyLoader.parse(text: EmbeddedTopology.text)
        #expect(t.hosts.map(\.name) == [EmbeddedTopology.hostName])
    }

    @Test func fourHostsResolvesDefaultsGroupsAndNAT() throws {
        let (t, _) = try TopologyLoader.load(path: RepositoryPaths.topologies + "/four-hosts.yaml")
        #expect(t.links.count == 28)  // 8 instances, all pairs
        #expect(t.services.first?.listen.first?.port == 15432)
        let h4 = try #require(t.view(for: "h4", controlSocket: "/s"))
        #expect(h4.instances.map(\.instance.name) == ["h4a", "h4b"])
        #expect(h4.instances[0].ringSize == .mebibytes(4))
        #expect(h4.instances[1].ringSize == .mebibytes(1))
        #expect(h4.links.filter { $0.kind == .local }.count == 1)
        #expect(h4.peers.count == 3)
        #expect(h4.peers.allSatisfy { $0.weDial }, "a host behind NAT dials every peer")
        #expect(h4.peers.allSatisfy { $0.linkCount == 4 })
        let h1 = try #require(t.view(for: "h1", controlSocket: "/s"))
        #expect(h1.peers.first { $0.host.name == "h4" }?.weDial == false)
        #expect(h1.peers.first { $0.host.name == "h2" }?.weDial == true, "lower name dials")
        let toH4a = try #require(h1.links.first { $0.peerEnd == "h4a" })
        #expect(toH4a.ringSizeToPeer == .mebibytes(4))
        #expect(toH4a.ringSizeToLocal == .mebibytes(1))
        #expect(h1.services.map(\.name) == ["pg"])
        #expect(h1.controlSocket == "/s")
    }

    @Test func defaultsAreFilledIn() throws {
        let (t, _) = try TopologyLoader.parse(text: """
            cluster: minimal
            version: 1
            hosts:
              - name: a
                address: 10.0.0.1
            """)
        let host = t.hosts[0]
        #expect(host.port == 7300)
        #expect(host.transport == .auto)
        #expect(host.nat == .none)
        #expect(host.channels == 2)
        #expect(t.defaults.maxMessageSize == .mebibytes(64))
        #expect(t.defaults.peerTimeoutMilliseconds <= 1000)
    }

    @Test func linkSettingsOverrideInstanceAndDefaults() throws {
        let (t, _) = try TopologyLoader.parse(text: """
            cluster: c
            version: 1
            defaults: { ring_size: 64KiB }
            hosts: [{ name: a, address: "::1", control_socket: /run/custom.sock }]
            instances:
              - { name: x, host: a, ring_size: 256KiB, uid: 1000, gid: 1000, token_file: /etc/vio/x.token }
              - { name: y, host: a }
              - { name: z, host: a }
            links:
              - { between: [x, y] }
              - { between: [x, z], ring_size: 2MiB, max_message_size: 3000 }
            """)
        let v = try #require(t.view(for: "a", controlSocket: "/default.sock"))
        #expect(v.controlSocket == "/run/custom.sock")
        let xy = try #require(v.link(between: "x", and: "y"))
        #expect(xy.ringSizeToLocal == .kibibytes(256))
        #expect(xy.ringSizeToPeer == .kibibytes(64))
        let xz = try #require(v.link(between: "x", and: "z"))
        #expect(xz.ringSizeToLocal == .mebibytes(2) && xz.ringSizeToPeer == .mebibytes(2))
        #expect(xz.maxMessageSize == ByteSize(bytes: 3000))
        #expect(t.instance(named: "x")?.uid == 1000)
        #expect(t.instance(named: "x")?.tokenFile == "/etc/vio/x.token")
    }

    @Test func rdmaDeviceWithTCPIsAWarningNotAnError() throws {
        let (_, warnings) = try TopologyLoader.parse(text: """
            cluster: c
            version: 1
            hosts: [{ name: a, address: 127.0.0.1, transport: tcp, rdma_device: mlx5_0 }]
            """)
        #expect(warnings.count == 1)
        #expect(warnings[0].severity == .warning)
        #expect(warnings[0].message.contains("rdma_device is ignored"))
    }

    @Test func unknownHostInViewIsNil() throws {
        let (t, _) = try TopologyLoader.parse(text: EmbeddedTopology.text)
        #expect(t.view(for: "nope", controlSocket: "/s") == nil)
    }

    @Test func printerShowsResolvedValues() throws {
        let (t, _) = try TopologyLoader.load(path: RepositoryPaths.topologies + "/two-hosts.yaml")
        let text = TopologyPrinter.render(try #require(t.view(for: "alpha", controlSocket: "/run/vio/alpha.sock")))
        #expect(text.contains("route: via agents to host beta"))
        #expect(text.contains("control_socket: /run/vio/alpha.sock"))
        #expect(text.contains("channels: 2 (this host dials)"))
        #expect(text.contains("max_message_size: 8MiB"))
    }

    /// `metrics_listen` in `defaults` applies to every host; a host may set its own or `off`.
    @Test func metricsListenDefaultsAndOverrides() throws {
        let (t, _) = try TopologyLoader.parse(text: """
            cluster: c
            version: 1
            defaults: { metrics_listen: "0.0.0.0:9464" }
            hosts:
              - { name: a, address: 10.0.0.1 }
              - { name: b, address: 10.0.0.2, metrics_listen: "[::1]:9500" }
              - { name: c, address: 10.0.0.3, metrics_listen: "off" }
            """)
        #expect(t.hosts.map(\.metricsListen) == ["0.0.0.0:9464", "[::1]:9500", nil])
        #expect(Host.listenAddress("[::1]:9500")! == ("::1", 9500))
    }
}
