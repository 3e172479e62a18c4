@testable import JailDaemon
import XCTest

/// jaild writes a tenant's host account itself (AccountFiles): the edits of the four account
/// files, on their bytes, must leave every other byte as it was and give what useradd,
/// groupadd and userdel give.
final class AccountTextTests: XCTestCase {
    let passwd = AccountText("""
        root:x:0:0:root:/root:/bin/bash
        # a comment that looks like web:x:61000:
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        web:x:61000:61000:jail web:/srv/home/web:/usr/bin/jail
        web2:x:61001:61000:jail web2:/srv/home/web2:/usr/bin/jail

        """)
    let group = AccountText("""
        root:x:0:
        jail:x:995:web,web2,other
        web:x:61000:
        admins:x:50:web
        """)

    func testLookupsMatchWholeFieldsAndSkipComments() {
        XCTAssertEqual(AccountText.passwdEntry(passwd.line(named: "web"))?.uid, 61000)
        XCTAssertNil(passwd.line(named: "we"))
        XCTAssertNil(passwd.line(named: "a comment that looks like web"))
        XCTAssertEqual(AccountText.passwdEntry(passwd.line(whereField: 2, is: "61001"))?.name, "web2")
        XCTAssertNil(passwd.line(whereField: 2, is: "6100"))
        XCTAssertEqual(AccountText.passwdEntry(passwd.line(whereField: 3, is: "61000"))?.name, "web")
        XCTAssertEqual(AccountText.passwdEntry(passwd.line(whereField: 6, is: "/usr/bin/jail"))?.name, "web")
        XCTAssertNil(passwd.line(whereField: 9, is: ""))
        XCTAssertEqual(AccountText.groupEntry(group.line(whereField: 2, is: "995"))?.members, ["web", "web2", "other"])
        XCTAssertTrue(group.contains(name: "admins"))
        XCTAssertFalse(AccountText("").contains(name: "root"))
    }

    func testTheJailsWhoseAccountsCreateMade() {
        // web's comment is "jail web"; web2's is "jail web2"; root's is not; a comment naming another is not.
        let text = AccountText(String(decoding: passwd.bytes, as: UTF8.self) + "odd:x:61002:61002:jail web:/:/usr/bin/jail\n")
        XCTAssertEqual(text.namesOfCreatedJails, ["web", "web2"])
        XCTAssertEqual(text.createdJail(withUID: 61001), "web2")
        XCTAssertNil(text.createdJail(withUID: 61002))
        XCTAssertNil(text.createdJail(withUID: 0))
        XCTAssertNil(text.createdJail(withUID: 4))
    }

    func testAppendingAddsTheNewlineAFileLacks() {
        XCTAssertEqual(String(decoding: AccountText("a:x:1:\n").appending("b:x:2:"), as: UTF8.self), "a:x:1:\nb:x:2:\n")
        XCTAssertEqual(String(decoding: AccountText("a:x:1:").appending("b:x:2:"), as: UTF8.self), "a:x:1:\nb:x:2:\n")
        XCTAssertEqual(String(decoding: AccountText("").appending("b:x:2:"), as: UTF8.self), "b:x:2:\n")
    }

    func testAddingAMemberKeepsEveryOtherByte() throws {
        let text = AccountText("root:x:0:\njail:x:995:\nweb:x:61000:")
        let once = try XCTUnwrap(text.addingMember("web", toGroup: "jail", field: 3))
        XCTAssertEqual(String(decoding: once, as: UTF8.self), "root:x:0:\njail:x:995:web\nweb:x:61000:")
        let twice = try XCTUnwrap(AccountText(once).addingMember("db", toGroup: "jail", field: 3))
        XCTAssertEqual(AccountText.groupEntry(AccountText(twice).line(named: "jail"))?.members.count, 2)
        XCTAssertEqual(AccountText(twice).addingMember("db", toGroup: "jail", field: 3), twice, "a member listed already")
        XCTAssertNil(text.addingMember("web", toGroup: "nosuch", field: 3))
        // gshadow: name:password:administrators:members.
        let gshadow = AccountText("jail:!::\nweb:!::\n")
        XCTAssertEqual(String(decoding: try XCTUnwrap(gshadow.addingMember("web", toGroup: "jail", field: 3)), as: UTF8.self),
                       "jail:!::web\nweb:!::\n")
    }

    func testRemovingTakesTheLinesAndEveryMembership() {
        let removed = String(decoding: group.removing("web", memberFields: [3]), as: UTF8.self)
        XCTAssertEqual(removed, "root:x:0:\njail:x:995:web2,other\nadmins:x:50:")
        let kept = String(decoding: group.removing("web", keepingLines: true, memberFields: [3]), as: UTF8.self)
        XCTAssertEqual(kept, "root:x:0:\njail:x:995:web2,other\nweb:x:61000:\nadmins:x:50:")
        let gshadow = AccountText("jail:!:web:web,web2\nweb:!::\n")
        XCTAssertEqual(String(decoding: gshadow.removing("web", memberFields: [2, 3]), as: UTF8.self), "jail:!::web2\n")
        // passwd: only the line of that name (web2 and the comment stay, blank lines too).
        let passwdText = String(decoding: passwd.removing("web"), as: UTF8.self)
        XCTAssertFalse(passwdText.contains("\nweb:x:61000"))
        XCTAssertTrue(passwdText.contains("web2:x:61001"))
        XCTAssertTrue(passwdText.contains("# a comment that looks like web:x:61000:"))
        XCTAssertEqual(AccountText(passwd.removing("nosuch")), passwd)
    }

    func testPasswordAgesAsUseraddWritesThem() {
        let defs = Array("# PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE -1\nUMASK 022\n".utf8)
        let ages = PasswordAges.parse(loginDefs: defs)
        XCTAssertEqual(ages, PasswordAges(minimum: 0, maximum: 99999, warning: nil))
        XCTAssertEqual(ages.shadowFields, "0:99999:")
        XCTAssertEqual(PasswordAges.parse(loginDefs: []).shadowFields, "::")
    }
}
