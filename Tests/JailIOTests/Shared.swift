import Foundation
import JailIO
import JailProtocol
import JailSystem
import SystemPackage
import XCTest

/// A value shared with the relay's thread; the tests order the accesses themselves.
final class Shared<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
