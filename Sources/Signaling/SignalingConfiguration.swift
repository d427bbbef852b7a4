import Foundation

/// Settings of the signaling application: the ICE event name and every limit.
public struct SignalingConfiguration: Sendable {
    /// Under which name a relayed ICE candidate is emitted.
    public enum ICEEventName: String, Sendable, CaseIterable {
        /// `ice_candidate` and then `ice-candidate`: the seed's client listens for the first, the seed server sent
        /// the second.
        case both
        /// `ice_candidate`, what the seed's client listens for (this makes remote video work).
        case underscore
        /// `ice-candidate`, what the seed's server sent.
        case hyphen

        var names: [String] {
            switch self {
            case .both: ["ice_candidate", "ice-candidate"]
            case .underscore: ["ice_candidate"]
            case .hyphen: ["ice-candidate"]
            }
        }
    }

    public var iceEventName: ICEEventName = .both
    /// Longest room name, in characters.
    public var maxRoomNameLength = 128
    /// Longest person name, in characters.
    public var maxPersonNameLength = 64
    /// Longest chat message content, in characters (or bytes for binary content).
    public var maxContentLength = 10_000
    /// Longest SDP of an offer or answer, in characters.
    public var maxSDPLength = 100_000
    /// Longest ICE candidate line, in characters.
    public var maxCandidateLength = 2_048
    /// Sustained events per second per socket (token bucket refill rate).
    public var eventsPerSecond = 50.0
    /// Events a socket may send in a burst (token bucket size).
    public var eventBurst = 100.0
    /// Events of one socket that may wait behind a Redis round trip; beyond it they are refused (`overloaded`).
    public var maxQueuedEvents = 64
    /// Bytes those waiting events may keep (signals and messages keep their payload while they wait).
    public var maxQueuedBytes = 1_000_000
    /// Rooms one socket may be in at once.
    public var maxRoomsPerSocket = 16
    /// Members a room may have, cluster-wide.
    public var maxMembersPerRoom = 50
    /// When set, CONNECT needs a valid JWT (auth `{token}` or `?token=`).
    public var jwt: JWTVerifier? = nil
    /// ICE servers (STUN, TURN with short-lived credentials) handed to clients.
    public var iceServers = ICEServerConfiguration()
    /// The time now, seconds since 1970: what tokens are checked against, what dates chat messages and TURN
    /// credentials, and from which a token's expiry is timed. The system clock; tests set their own.
    public var now: @Sendable () -> Double = { Date().timeIntervalSince1970 }

    public init() {}
}
