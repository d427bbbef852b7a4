/// Settings of the signaling application.
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

    public init() {}
}
