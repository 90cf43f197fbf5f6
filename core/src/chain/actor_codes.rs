//! The built-in actors' code CIDs, per network and actors version: how a chain client tells an
//! account, the Init actor, a multisig or a payment channel from its `StateGetActor` code
//! without `StateActorCodeCIDs` (which a Lotus gateway does not serve).
//!
//! The table is copied from Lotus's `build/builtin_actors_gen.go`
//! (github.com/filecoin-project/lotus, generated from the builtin-actors release bundles),
//! for `mainnet` and `calibrationnet`, actors versions 12 (network version 21) onwards, and
//! only the actors paych tells apart. A release whose four codes are those of the one before
//! is not repeated: actors 19 ships the codes of actors 18, so 18's entries stand for both. The devnet's own codes come from
//! [`crate::chain::devnet::state::code_cid`]. To add a release: copy its `account`, `init`,
//! `multisig` and `paymentchannel` lines from that file into [`RELEASES`] (docs/chains.md).
//!
//! This module only looks codes up; it does no I/O.

use std::collections::HashMap;
use std::sync::OnceLock;

use cid::Cid;

use super::devnet::state::{code_cid, NETWORK_VERSION};
use super::ActorKind;

/// The actors paych tells apart, by their Lotus names, in the order of [`Release::codes`].
pub const ACTOR_NAMES: [&str; 4] = ["account", "init", "multisig", "paymentchannel"];

/// The network name `paych devnet` reports by default, whose codes the devnet computes.
pub const DEVNET_NETWORK: &str = "paych-devnet";

/// One builtin-actors release on one network: its code CIDs by actor name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The network's name (`StateNetworkName`): `mainnet`, `calibrationnet`.
    pub network: &'static str,
    /// The actors version (network version 21 runs actors 12, … see Lotus's
    /// `actorstypes.VersionForNetwork`).
    pub actors_version: u32,
    /// `(name, code CID)` for each of [`ACTOR_NAMES`].
    pub codes: [(&'static str, &'static str); 4],
}

/// A built-in actor recognised by its code CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCode {
    /// The network whose release it belongs to (the devnet's is [`DEVNET_NETWORK`]).
    pub network: &'static str,
    /// The actors version of that release (the devnet reports its network version).
    pub actors_version: u32,
    /// The actor's Lotus name.
    pub name: &'static str,
    /// Its kind, as payment channels care.
    pub kind: ActorKind,
}

/// The kind an actor's Lotus name stands for.
pub fn kind_from_name(name: &str) -> ActorKind {
    match name {
        "account" => ActorKind::Account,
        "init" => ActorKind::Init,
        "paymentchannel" => ActorKind::PaymentChannel,
        _ => ActorKind::Other,
    }
}

/// What a code CID is, if it is one of the table's (or the devnet's).
pub fn known(code: &Cid) -> Option<&'static KnownCode> {
    index().get(code)
}

/// The code CID of `kind` in the same release as the code `sibling` (e.g. the Init actor's
/// code read from the chain): the payment-channel code to create a channel with, on the
/// network and at the actors version the chain runs now. `None` if `sibling` is not in the
/// table or `kind` is [`ActorKind::Other`].
pub fn code_in_release_of(sibling: &Cid, kind: ActorKind) -> Option<Cid> {
    let of = known(sibling)?;
    index()
        .iter()
        .find(|(_, k)| {
            k.network == of.network && k.actors_version == of.actors_version && k.kind == kind
        })
        .map(|(cid, _)| *cid)
        .filter(|_| kind != ActorKind::Other)
}

/// Every code of the table and the devnet, parsed once.
fn index() -> &'static HashMap<Cid, KnownCode> {
    static INDEX: OnceLock<HashMap<Cid, KnownCode>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = HashMap::new();
        for release in RELEASES {
            for (name, text) in release.codes {
                // The table is checked by a test; a line that does not parse is skipped.
                if let Ok(cid) = Cid::try_from(text) {
                    let known = KnownCode {
                        network: release.network,
                        actors_version: release.actors_version,
                        name,
                        kind: kind_from_name(name),
                    };
                    index.insert(cid, known);
                }
            }
        }
        for name in ACTOR_NAMES {
            let known = KnownCode {
                network: DEVNET_NETWORK,
                actors_version: NETWORK_VERSION,
                name,
                kind: kind_from_name(name),
            };
            index.insert(code_cid(name), known);
        }
        index
    })
}

/// The releases, from Lotus's `build/builtin_actors_gen.go`.
pub const RELEASES: &[Release] = &[
    Release {
        network: "calibrationnet",
        actors_version: 12,
        codes: [
            ("account", "bafk2bzacechwwxdqvggkdylm37zldjsra2ivkdzwp7fee56bzxbzs544wv6u6"),
            ("init", "bafk2bzaceaewh7b6zl2egclm7fqzx2lsqr57i75lb6cj43ndoa4mal3k5ld3m"),
            ("multisig", "bafk2bzacednkwcpw5yzxjceoaliajgupzj6iqxe7ks2ll3unspbprbo5f2now"),
            ("paymentchannel", "bafk2bzacebaxhk4itfiuvbftg7kz5zxugqnvdgerobitjq4vl6q4orcwk6wqg"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 13,
        codes: [
            ("account", "bafk2bzaceb3j36ri5y5mfklgp5emlvrms6g4733ss2j3l7jismrxq6ng3tcc6"),
            ("init", "bafk2bzaced5sq72oemz6qwi6yssxwlos2g54zfprslrx5qfhhx2vlgsbvdpcs"),
            ("multisig", "bafk2bzacedbgei6jkx36fwdgvoohce4aghvpohqdhoco7p4thszgssms7olv2"),
            ("paymentchannel", "bafk2bzaceasmgmfsi4mjanxlowsub65fmevhzky4toeqbtw4kp6tmu4kxjpgq"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 14,
        codes: [
            ("account", "bafk2bzaced5ecfm56dvtw26q56j4d32yoccyd7ggxn3qdki2enxpqqav45ths"),
            ("init", "bafk2bzacedfmsdlewihdcrkdepnfata26nj7akbvexzs3chicujhjf2uxsazc"),
            ("multisig", "bafk2bzacedwx4svscsp6wqqu2vlcunjihvvm4u2jnsqjkwutjhir7dwtl7z6m"),
            ("paymentchannel", "bafk2bzacedbit7oo6lryhbo64uikvtjtfcth6oxwy3eebxerenu2h7rj44n24"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 15,
        codes: [
            ("account", "bafk2bzacecwdkoknhok52hlddoetdkqfwohhv4bx6csu3x6o7aduryv5ufssu"),
            ("init", "bafk2bzacedg7uw4z5gdzdlfzalc6xlmbqduawuk6gzrijtln35yas5yagn7s2"),
            ("multisig", "bafk2bzacean3scmnmvgvyxv44d775ssfwcwghyubqv4dul3ohkvlv3cm2bwui"),
            ("paymentchannel", "bafk2bzaceb3o3ayjxoi5dc3e6ysuyqtcwbas5cvl3mxhxn57ieackjah5dhe6"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 16,
        codes: [
            ("account", "bafk2bzacecvd4xzbqbviaydq5r2h2jdgcn6bh5nklvohgvorznpstmir7l6dw"),
            ("init", "bafk2bzacedsfrhdsqolmmbw2pmhe6yv57xifdu7ohcybguzhlt7xjeqpbtkak"),
            ("multisig", "bafk2bzacedtukutyifkwelun4nq7asowfzmdyrefmycc3xphajdlauti2w7zq"),
            ("paymentchannel", "bafk2bzaceaftvzd5t2wkmmsgs2lzndoqpb2fkhpzdafnuhxiw2abzzevdc6me"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 17,
        codes: [
            ("account", "bafk2bzacedfxgwdy3aoxwbwiyet5qwvfxiy5dl3gixy645dwsasm62tpzdojk"),
            ("init", "bafk2bzacebfiyegcp2fznxfqq54uailxbl3tdbmhbvvs2vh5ae762fmqkwv7s"),
            ("multisig", "bafk2bzacecmjfy72xhq726aewdcg5n2ospadxdhvisnclx43ujrg65ujrjwtq"),
            ("paymentchannel", "bafk2bzacecudlzl2infgft4rxwwvsovts23ri2gi7dbfcblw2uny4y7rcjuni"),
        ],
    },
    Release {
        network: "calibrationnet",
        actors_version: 18,
        codes: [
            ("account", "bafk2bzaceaaekrmq3cqnzokwmuksgr7vqgslpm67blh3fhj4cwgnk5vgoksam"),
            ("init", "bafk2bzaceckaapwi22d56nqlnieqapwaqmicv7oqtbuowa4vfrckqr465eank"),
            ("multisig", "bafk2bzacechrsbw65ojbktr63swju5g7275fl3lxminrz7damr4me6wq6fjxm"),
            ("paymentchannel", "bafk2bzacecycr25bi4fqwpkrkyiarch3qlhakt6l5linxrs4vpjzv5a3a55rg"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 12,
        codes: [
            ("account", "bafk2bzaceboftg75mdiba7xbo2i3uvgtca4brhnr3u5ptihonixgpnrvhpxoa"),
            ("init", "bafk2bzacebllyegx5r6lggf6ymyetbp7amacwpuxakhtjvjtvoy2bfkzk3vms"),
            ("multisig", "bafk2bzacecw5lyp3n3t67xdwrmo36h4z7afc3lobmmr6wg55w6yjzg5jhmh42"),
            ("paymentchannel", "bafk2bzacectv4cm47bnhga5febf3lo3fq47g72kmmp2xd5s6tcxz7hiqdywa4"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 13,
        codes: [
            ("account", "bafk2bzacedxnbtlsqdk76fsfmnhyvsblwyfducerwwtp3mqtx2wbrvs5idl52"),
            ("init", "bafk2bzacedr4xacm3fts4vilyeiacjr2hpmwzclyzulbdo24lrfxbtau2wbai"),
            ("multisig", "bafk2bzacecr5zqarfqak42xqcfeulsxlavcltawsx2fvc7zsjtby6ti4b3wqc"),
            ("paymentchannel", "bafk2bzacebntdhfmyc24e7tm52ggx5tnw4i3hrr3jmllsepv3mibez4hywsa2"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 14,
        codes: [
            ("account", "bafk2bzacebr7ik7lng7vysm754mu5x7sakphwm4soqi6zwbox4ukpd6ndwvqy"),
            ("init", "bafk2bzacecbbcshenkb6z2v4irsudv7tyklfgphhizhghix6ke5gpl4r5f2b6"),
            ("multisig", "bafk2bzaceajcmsngu3f2chk2y7nanlen5xlftzatytzm6hxwiiw5i5nz36bfc"),
            ("paymentchannel", "bafk2bzaceavslp27u3f4zwjq45rlg6assj6cqod7r5f6wfwkptlpi6j4qkmne"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 15,
        codes: [
            ("account", "bafk2bzacecia5zacqt4gvd4z7275lnkhgraq75shy63cphakphhw6crf4joii"),
            ("init", "bafk2bzaceb5mjmy56ediswt2hvwqdfs2xzi4qw3cefkufoat57yyt3iwkg7kw"),
            ("multisig", "bafk2bzaced3csl3buj7chpunsubrhwhchtskx674fpukfen4u6pbpkcheueya"),
            ("paymentchannel", "bafk2bzacea3dpsfxw7cnj6zljmjnnaubp43a5kvuausigztmukektesg2flei"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 16,
        codes: [
            ("account", "bafk2bzacedef4sqdsfebspu7dqnk7naj27ac4lyho4zmvjrei5qnf2wn6v64u"),
            ("init", "bafk2bzacecfk7a3ns32wrbyoxvv4jfdoesl7cqpc34rqdsiehxvr4kz6jzc7u"),
            ("multisig", "bafk2bzaceastb65il5j3v2q2pfxgk7brmzh6djzisjo3mfybbiplgy3w7iscm"),
            ("paymentchannel", "bafk2bzaceanasifggzenhwl5cchnv3rro63mcodpveix6glfkzuwl3qknqn6k"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 17,
        codes: [
            ("account", "bafk2bzaceb4as5yyhjfkvxgooum37uvm5gbjr4dtbpxmqnpvvbjfpu5qouii4"),
            ("init", "bafk2bzacecp5go2numz52kerspigi2e3rygesaqeqhn4gegmfgr5xoon73sde"),
            ("multisig", "bafk2bzaceblf5vqw4dwjueoetgawhg7t6he7qhdnfy3shf7ufnfv4mkwchgbm"),
            ("paymentchannel", "bafk2bzaceavlvljdoww4v3bp225p6lurcxtdsub4rg33ee6xhvhkyyysnenac"),
        ],
    },
    Release {
        network: "mainnet",
        actors_version: 18,
        codes: [
            ("account", "bafk2bzacebt5o43hdveql4tqrnr7bg62by3d336ddsfl3l72xedhlsrbe6nia"),
            ("init", "bafk2bzacedrpq4kw6x7cq72w4g4fw56wj6ml4b3doeay6jyivm4dhkxijbe62"),
            ("multisig", "bafk2bzacecgyiuanstjcdo43xkax274hmyyfiw7ju44uvcyreayonp7r3fmls"),
            ("paymentchannel", "bafk2bzacebuw6l22xfht4gv4q5ltk66sy6ibp6ou63wvy6zaiyzievu3cl4v2"),
        ],
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_code_in_the_table_parses_and_is_unique() {
        let count: usize = RELEASES.iter().map(|r| r.codes.len()).sum();
        assert_eq!(index().len(), count + ACTOR_NAMES.len());
        for release in RELEASES {
            let names: Vec<&str> = release.codes.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, ACTOR_NAMES);
        }
    }

    #[test]
    fn the_table_holds_mainnet_and_calibnet_for_recent_actors_versions() {
        for network in ["mainnet", "calibrationnet"] {
            for version in 12..=17 {
                assert!(
                    RELEASES.iter().any(|r| r.network == network && r.actors_version == version),
                    "{network} v{version}"
                );
            }
        }
    }

    #[test]
    fn mainnet_v16_payment_channel_code_is_recognised() {
        // Lotus build/builtin_actors_gen.go, mainnet, actors version 16.
        let release =
            RELEASES.iter().find(|r| r.network == "mainnet" && r.actors_version == 16).unwrap();
        let paych: Cid = Cid::try_from(release.codes[3].1).unwrap();
        let found = known(&paych).unwrap();
        assert_eq!((found.kind, found.name), (ActorKind::PaymentChannel, "paymentchannel"));
        let init: Cid = Cid::try_from(release.codes[1].1).unwrap();
        assert_eq!(code_in_release_of(&init, ActorKind::PaymentChannel), Some(paych));
        let multisig: Cid = Cid::try_from(release.codes[2].1).unwrap();
        assert_eq!(known(&multisig).unwrap().kind, ActorKind::Other);
    }

    #[test]
    fn the_devnet_codes_are_recognised() {
        let init = code_cid("init");
        assert_eq!(known(&init).unwrap().kind, ActorKind::Init);
        assert_eq!(
            code_in_release_of(&init, ActorKind::PaymentChannel),
            Some(code_cid("paymentchannel"))
        );
        assert_eq!(code_in_release_of(&init, ActorKind::Other), None);
        assert_eq!(known(&code_cid("reward")), None);
    }
}
