import Testing
@testable import VIOTopology

struct ScalarSyntaxTests {
    @Test(arguments: [("4096", 4096), ("64KiB", 65536), ("1 MiB", 1 << 20), ("2GiB", 2 << 30), ("512B", 512), ("1_048_576", 1 << 20)])
    func sizesParse(text: String, bytes: Int) {
        #expect(ByteSize(parsing: text)?.bytes == bytes)
    }

    @Test(arguments: ["", "MiB", "1MB", "1.5MiB", "-1", "1 TiB", "99999999999999999999GiB", "0x10"])
    func badSizesAreRefused(text: String) {
        #expect(ByteSize(parsing: text) == nil)
    }

    @Test func sizesPrintInTheLargestExactUnit() {
        #expect(ByteSize.mebibytes(64).description == "64MiB")
        #expect(ByteSize(bytes: 1536).description == "1536")
        #expect(ByteSize(bytes: 3 << 10).description == "3KiB")
    }

    @Test(arguments: ["127.0.0.1", "198.18.0.1", "::1", "fe80::1", "2001:db8:0:0:0:0:0:1", "db1.example.org", "localhost"])
    func goodAddresses(text: String) {
        #expect(Addresses.isValidHost(text))
    }

    @Test(arguments: ["300.1.1.1", "1.2.3", "01.2.3.4", "1:2:3", "a::b::c", "-bad.example", "has space", "", "1.2.3.4.5"])
    func badAddresses(text: String) {
        #expect(!Addresses.isValidHost(text))
    }

    @Test func hostPortSplitting() {
        #expect(Addresses.splitHostPort("127.0.0.1:5432")! == ("127.0.0.1", 5432))
        #expect(Addresses.splitHostPort("[::1]:80")! == ("::1", 80))
        #expect(Addresses.splitHostPort("db.local:1")! == ("db.local", 1))
        #expect(Addresses.splitHostPort("127.0.0.1") == nil)
        #expect(Addresses.splitHostPort("127.0.0.1:0") == nil)
        #expect(Addresses.splitHostPort("127.0.0.1:99999") == nil)
        #expect(Addresses.splitHostPort("::1:80") == nil)
    }

    @Test func namesFollowTheRule() {
        #expect(Names.isValid("db-1.shard_2"))
        #expect(Names.isValid("1db"))
        #expect(!Names.isValid("-db"))
        #expect(!Names.isValid("db 1"))
        #expect(!Names.isValid(String(repeating: "a", count: 64)))
        #expect(!Names.isValid("dé"))
    }

    @Test func suggestionsCatchTypos() {
        #expect(NodeDecoder.closest(to: "adress", in: NodeDecoder.hostKeys) == "address")
        #expect(NodeDecoder.closest(to: "ringsize", in: NodeDecoder.instanceKeys) == "ring_size")
        #expect(NodeDecoder.closest(to: "zzzzzz", in: NodeDecoder.hostKeys) == nil)
    }
}
