//! Free text in many languages: detection, per-language stemming, and the
//! themes a text mentions.
//!
//! - Language detection: `whatlang` (trigram profiles compiled into the
//!   binary, no model files). It knows Serbian only in Cyrillic script;
//!   Serbian in Latin script is reported as Croatian (`hr`), its mutually
//!   intelligible neighbour. A caller that knows better sets the language.
//! - Stemming: Snowball stemmers from `rust-stemmers` for the languages it
//!   has (English, Swedish, Danish, Norwegian, Greek, German, Finnish and
//!   others). Serbian, Croatian and Bosnian have none there: their words are
//!   transliterated from Cyrillic to Latin, stripped of diacritics and
//!   cut by a light suffix stemmer (the usual inflection endings), which is
//!   enough to join the forms of a word for theme detection. Languages with
//!   neither are matched on lower-cased words.
//! - Themes: a built-in lexicon of what operators' customers talk about
//!   (billing, network, price, delivery, support, app, speed, roaming,
//!   contract, device, dark mode, eSIM...), written per language as plain
//!   words and stemmed with the same stemmers at start, maps stems of any
//!   language to one English theme, so "fakturan", "regningen", "račun" and
//!   "bill" all count for "billing".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// The BCP 47 tag of the language `text` is written in; "und" when unknown.
pub fn detect_language(text: &str) -> String {
    match whatlang::detect(text) {
        Some(info) => bcp47(info.lang()).to_string(),
        None => "und".to_string(),
    }
}

/// The two-letter tag of the languages that have one; ISO 639-3 otherwise
/// (also valid BCP 47).
fn bcp47(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Eng => "en",
        Swe => "sv",
        Dan => "da",
        Nob => "nb",
        Srp => "sr",
        Hrv => "hr",
        Ell => "el",
        Deu => "de",
        Fin => "fi",
        Fra => "fr",
        Spa => "es",
        Ita => "it",
        Nld => "nl",
        Por => "pt",
        Rus => "ru",
        Pol => "pl",
        Tur => "tr",
        Ukr => "uk",
        Hun => "hu",
        Ron => "ro",
        Ces => "cs",
        Slk => "sk",
        Slv => "sl",
        Bul => "bg",
        Mkd => "mk",
        Ara => "ar",
        Tam => "ta",
        Est => "et",
        Lav => "lv",
        Lit => "lt",
        other => other.code(),
    }
}

/// How words of one language are reduced to stems.
enum Reducer {
    Snowball(Stemmer),
    SouthSlavic,
    Plain,
}

fn reducer(language: &str) -> Reducer {
    let primary = language
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let algorithm = match primary.as_str() {
        "en" => Algorithm::English,
        "sv" => Algorithm::Swedish,
        "da" => Algorithm::Danish,
        "nb" | "nn" | "no" => Algorithm::Norwegian,
        "el" => Algorithm::Greek,
        "de" => Algorithm::German,
        "fi" => Algorithm::Finnish,
        "fr" => Algorithm::French,
        "es" => Algorithm::Spanish,
        "it" => Algorithm::Italian,
        "nl" => Algorithm::Dutch,
        "pt" => Algorithm::Portuguese,
        "ru" => Algorithm::Russian,
        "ro" => Algorithm::Romanian,
        "hu" => Algorithm::Hungarian,
        "tr" => Algorithm::Turkish,
        "ar" => Algorithm::Arabic,
        "ta" => Algorithm::Tamil,
        "sr" | "hr" | "bs" | "sh" | "cnr" => return Reducer::SouthSlavic,
        _ => return Reducer::Plain,
    };
    Reducer::Snowball(Stemmer::create(algorithm))
}

/// The stems of `text` read as `language`, in order.
pub fn stems(text: &str, language: &str) -> Vec<String> {
    let reducer = reducer(language);
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let lower = word.to_lowercase();
            match &reducer {
                Reducer::Snowball(stemmer) => stemmer.stem(&lower).into_owned(),
                Reducer::SouthSlavic => south_slavic_stem(&lower),
                Reducer::Plain => lower,
            }
        })
        .collect()
}

/// Serbian Cyrillic to Latin, diacritics dropped (č→c, đ→dj...), then the
/// longest usual inflection ending cut while at least three letters stay.
fn south_slavic_stem(word: &str) -> String {
    let mut latin = String::with_capacity(word.len());
    for c in word.chars() {
        let mapped = match c {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'ђ' => "dj",
            'е' => "e",
            'ж' => "z",
            'з' => "z",
            'и' => "i",
            'ј' => "j",
            'к' => "k",
            'л' => "l",
            'љ' => "lj",
            'м' => "m",
            'н' => "n",
            'њ' => "nj",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'ћ' => "c",
            'у' => "u",
            'ф' => "f",
            'х' => "h",
            'ц' => "c",
            'ч' => "c",
            'џ' => "dz",
            'ш' => "s",
            'č' | 'ć' => "c",
            'š' => "s",
            'ž' => "z",
            'đ' => "dj",
            other => {
                latin.push(other);
                continue;
            }
        };
        latin.push_str(mapped);
    }
    const ENDINGS: [&str; 22] = [
        "ovima", "ama", "ima", "om", "em", "og", "ega", "emu", "ih", "im", "oj", "om", "ov", "ev",
        "a", "e", "i", "o", "u", "ju", "ti", "la",
    ];
    let mut best = latin.as_str();
    for ending in ENDINGS {
        if let Some(stem) = latin.strip_suffix(ending)
            && stem.chars().count() >= 3
            && stem.len() < best.len()
        {
            best = stem;
        }
    }
    best.to_string()
}

/// Themes and the words that mean them, per language. Phrases of two words
/// are matched on consecutive stems.
/// The words of one language for one theme.
type Words = &'static [&'static str];
/// A theme's words per language.
type Entries = &'static [(&'static str, Words)];

const LEXICON: &[(&str, Entries)] = &[
    (
        "billing",
        &[
            (
                "en",
                &[
                    "bill",
                    "billing",
                    "invoice",
                    "charge",
                    "charged",
                    "overcharged",
                ],
            ),
            (
                "sv",
                &["faktura", "fakturan", "räkning", "räkningen", "debitering"],
            ),
            ("da", &["regning", "regningen", "faktura", "opkrævning"]),
            ("nb", &["regning", "regningen", "faktura"]),
            (
                "sr",
                &["račun", "računa", "рачун", "рачуна", "naplata", "наплата"],
            ),
            ("hr", &["račun", "računa", "naplata"]),
            ("el", &["λογαριασμός", "λογαριασμό", "χρέωση", "χρεώσεις"]),
            ("de", &["rechnung", "abrechnung"]),
            ("fi", &["lasku", "laskutus"]),
        ],
    ),
    (
        "network",
        &[
            (
                "en",
                &[
                    "network",
                    "coverage",
                    "signal",
                    "outage",
                    "connection",
                    "dropped",
                ],
            ),
            (
                "sv",
                &[
                    "nätet",
                    "nätverk",
                    "täckning",
                    "täckningen",
                    "signal",
                    "avbrott",
                    "uppkoppling",
                ],
            ),
            (
                "da",
                &[
                    "netværk",
                    "netværket",
                    "dækning",
                    "dækningen",
                    "signal",
                    "forbindelse",
                    "nedbrud",
                ],
            ),
            (
                "nb",
                &["nettet", "nettverk", "dekning", "dekningen", "signal"],
            ),
            (
                "sr",
                &[
                    "mreža",
                    "mreže",
                    "мрежа",
                    "мреже",
                    "signal",
                    "сигнал",
                    "pokrivenost",
                    "покривеност",
                ],
            ),
            ("hr", &["mreža", "mreže", "signal", "pokrivenost"]),
            ("el", &["δίκτυο", "σήμα", "κάλυψη"]),
            ("de", &["netz", "netzabdeckung", "empfang"]),
            ("fi", &["verkko", "kuuluvuus"]),
        ],
    ),
    (
        "price",
        &[
            ("en", &["price", "prices", "expensive", "cost", "costly"]),
            ("sv", &["pris", "priset", "dyr", "dyrt", "kostnad"]),
            ("da", &["pris", "prisen", "dyr", "dyrt"]),
            ("nb", &["pris", "prisen", "dyr", "dyrt"]),
            ("sr", &["cena", "cene", "цена", "цене", "skupo", "скупо"]),
            ("hr", &["cijena", "skupo"]),
            ("el", &["τιμή", "τιμές", "ακριβό", "ακριβά"]),
            ("de", &["preis", "teuer"]),
            ("fi", &["hinta", "kallis"]),
        ],
    ),
    (
        "delivery",
        &[
            (
                "en",
                &["delivery", "delivered", "shipping", "courier", "parcel"],
            ),
            (
                "sv",
                &["leverans", "leveransen", "levererad", "paket", "paketet"],
            ),
            (
                "da",
                &["levering", "leveringen", "leveret", "pakke", "pakken"],
            ),
            ("nb", &["levering", "leveringen", "pakke", "pakken"]),
            (
                "sr",
                &[
                    "dostava",
                    "dostave",
                    "достава",
                    "доставе",
                    "isporuka",
                    "испорука",
                    "paket",
                    "пакет",
                ],
            ),
            ("hr", &["dostava", "isporuka", "paket"]),
            ("el", &["παράδοση", "αποστολή", "δέμα"]),
            ("de", &["lieferung", "paket"]),
            ("fi", &["toimitus", "paketti"]),
        ],
    ),
    (
        "customer_service",
        &[
            (
                "en",
                &["support", "agent", "waiting", "wait", "queue", "hold"],
            ),
            (
                "sv",
                &[
                    "kundtjänst",
                    "kundtjänsten",
                    "support",
                    "väntetid",
                    "vänta",
                    "kö",
                ],
            ),
            (
                "da",
                &[
                    "kundeservice",
                    "kundeservicen",
                    "support",
                    "ventetid",
                    "vente",
                    "kø",
                ],
            ),
            (
                "nb",
                &["kundeservice", "kundeservicen", "ventetid", "vente"],
            ),
            (
                "sr",
                &[
                    "podrška",
                    "подршка",
                    "čekanje",
                    "чекање",
                    "čekao",
                    "чекао",
                    "operater",
                    "оператер",
                ],
            ),
            ("hr", &["podrška", "čekanje", "operater"]),
            ("el", &["εξυπηρέτηση", "υποστήριξη", "αναμονή"]),
            (
                "de",
                &[
                    "kundendienst",
                    "kundenservice",
                    "warteschleife",
                    "wartezeit",
                ],
            ),
            ("fi", &["asiakaspalvelu", "jonotus"]),
        ],
    ),
    (
        "app",
        &[
            ("en", &["app", "application", "crash", "crashes", "login"]),
            ("sv", &["app", "appen", "inloggning", "kraschar"]),
            ("da", &["app", "appen", "login", "crasher"]),
            ("nb", &["app", "appen", "innlogging"]),
            (
                "sr",
                &[
                    "aplikacija",
                    "aplikacije",
                    "апликација",
                    "апликације",
                    "prijava",
                    "пријава",
                ],
            ),
            ("hr", &["aplikacija", "aplikacije", "prijava"]),
            ("el", &["εφαρμογή"]),
            ("de", &["app", "anmeldung"]),
            ("fi", &["sovellus"]),
        ],
    ),
    (
        "speed",
        &[
            ("en", &["slow", "speed", "slowly"]),
            ("sv", &["långsam", "långsamt", "hastighet", "hastigheten"]),
            ("da", &["langsom", "langsomt", "hastighed", "hastigheden"]),
            ("nb", &["treg", "tregt", "hastighet"]),
            (
                "sr",
                &["sporo", "спорo", "споро", "spor", "брзина", "brzina"],
            ),
            ("hr", &["sporo", "brzina"]),
            ("el", &["αργό", "αργή", "αργά", "ταχύτητα"]),
            ("de", &["langsam", "geschwindigkeit"]),
            ("fi", &["hidas", "nopeus"]),
        ],
    ),
    (
        "roaming",
        &[
            ("en", &["roaming", "abroad"]),
            ("sv", &["roaming", "utomlands"]),
            ("da", &["roaming", "udlandet"]),
            ("nb", &["roaming", "utlandet"]),
            ("sr", &["roming", "роминг", "inostranstvu", "иностранству"]),
            ("hr", &["roaming", "inozemstvu"]),
            ("el", &["περιαγωγή", "εξωτερικό"]),
            ("de", &["roaming", "ausland"]),
            ("fi", &["verkkovierailu", "ulkomailla"]),
        ],
    ),
    (
        "contract",
        &[
            ("en", &["contract", "cancel", "cancellation", "termination"]),
            ("sv", &["avtal", "avtalet", "uppsägning", "abonnemang"]),
            ("da", &["kontrakt", "aftale", "opsigelse", "abonnement"]),
            ("nb", &["kontrakt", "avtale", "oppsigelse", "abonnement"]),
            (
                "sr",
                &[
                    "ugovor",
                    "уговор",
                    "otkaz",
                    "отказ",
                    "pretplata",
                    "претплата",
                ],
            ),
            ("hr", &["ugovor", "otkaz", "pretplata"]),
            ("el", &["συμβόλαιο", "ακύρωση"]),
            ("de", &["vertrag", "kündigung"]),
            ("fi", &["sopimus", "irtisanominen"]),
        ],
    ),
    (
        "device",
        &[
            ("en", &["phone", "device", "handset", "battery", "screen"]),
            (
                "sv",
                &["telefon", "telefonen", "mobil", "mobilen", "batteri"],
            ),
            ("da", &["telefon", "telefonen", "mobil", "batteri"]),
            ("nb", &["telefon", "telefonen", "mobil", "batteri"]),
            (
                "sr",
                &[
                    "telefon",
                    "телефон",
                    "uređaj",
                    "уређај",
                    "baterija",
                    "батерија",
                ],
            ),
            ("hr", &["telefon", "uređaj", "baterija"]),
            ("el", &["τηλέφωνο", "συσκευή", "μπαταρία"]),
            ("de", &["handy", "gerät", "akku"]),
            ("fi", &["puhelin", "akku"]),
        ],
    ),
    (
        "dark_mode",
        &[
            ("en", &["dark mode", "dark theme", "night mode"]),
            ("sv", &["mörkt läge", "mörkt tema"]),
            ("da", &["mørk tilstand", "mørkt tema"]),
            ("nb", &["mørk modus", "mørkt tema"]),
            (
                "sr",
                &["tamni režim", "тамни режим", "tamna tema", "тамна тема"],
            ),
            ("hr", &["tamni način", "tamna tema"]),
            ("el", &["σκοτεινό θέμα", "σκούρο θέμα"]),
            ("de", &["dunkler modus", "dunkelmodus"]),
            ("fi", &["tumma tila", "tumma teema"]),
        ],
    ),
    (
        "esim",
        &[
            ("en", &["esim", "e-sim"]),
            ("sv", &["esim"]),
            ("da", &["esim"]),
            ("nb", &["esim"]),
            ("sr", &["esim", "есим"]),
            ("hr", &["esim"]),
            ("el", &["esim"]),
            ("de", &["esim"]),
            ("fi", &["esim"]),
        ],
    ),
];

/// Stemmed lexicon: (language, stems of a word or phrase) → theme.
struct Lexicon {
    words: HashMap<(String, String), &'static str>,
    phrases: HashMap<(String, String, String), &'static str>,
}

fn lexicon() -> &'static Lexicon {
    static LEXICON_STEMS: OnceLock<Lexicon> = OnceLock::new();
    LEXICON_STEMS.get_or_init(|| {
        let mut words = HashMap::new();
        let mut phrases = HashMap::new();
        for (theme, languages) in LEXICON {
            for (language, entries) in *languages {
                for entry in *entries {
                    let stemmed = stems(entry, language);
                    match stemmed.as_slice() {
                        [one] => {
                            words.insert((language.to_string(), one.clone()), *theme);
                        }
                        [first, second] => {
                            phrases.insert(
                                (language.to_string(), first.clone(), second.clone()),
                                *theme,
                            );
                        }
                        _ => {}
                    }
                }
            }
        }
        Lexicon { words, phrases }
    })
}

/// The lexicon language used for `language`: its primary subtag, with
/// Serbian, Croatian and Bosnian sharing one list each way and Norwegian's
/// variants folded into Bokmål.
fn lexicon_language(language: &str) -> String {
    let primary = language
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match primary.as_str() {
        "no" | "nn" => "nb".to_string(),
        "bs" | "sh" | "cnr" => "sr".to_string(),
        _ => primary,
    }
}

/// The lexicon languages tried for text detected as `language`: itself and
/// its close neighbours, which detection on a short text often confuses
/// (Swedish, Danish and Norwegian; Serbian and Croatian).
fn neighbours(language: &str) -> Vec<String> {
    let primary = lexicon_language(language);
    let group: &[&str] = match primary.as_str() {
        "sv" => &["sv", "da", "nb"],
        "da" => &["da", "nb", "sv"],
        "nb" => &["nb", "da", "sv"],
        "sr" => &["sr", "hr"],
        "hr" => &["hr", "sr"],
        _ => &[],
    };
    if group.is_empty() {
        vec![primary]
    } else {
        group.iter().map(|l| l.to_string()).collect()
    }
}

/// The themes `text` in `language` mentions, in English, sorted.
pub fn themes(text: &str, language: &str) -> Vec<String> {
    let lexicon = lexicon();
    let mut found = BTreeSet::new();
    for language in neighbours(language) {
        // Each lexicon language's words are matched with its own stemmer.
        let stemmed = stems(text, &language);
        for (index, stem) in stemmed.iter().enumerate() {
            if let Some(theme) = lexicon.words.get(&(language.clone(), stem.clone())) {
                found.insert(theme.to_string());
            }
            if let Some(next) = stemmed.get(index + 1)
                && let Some(theme) =
                    lexicon
                        .phrases
                        .get(&(language.clone(), stem.clone(), next.clone()))
            {
                found.insert(theme.to_string());
            }
        }
    }
    found.into_iter().collect()
}

/// What two feature requests are compared on: their themes (language-free)
/// and their stems.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    /// Themes of the lexicon.
    pub themes: Vec<String>,
    /// Stems of the words, lower-cased.
    pub stems: Vec<String>,
}

impl Signature {
    /// The signature of `text` in `language`.
    pub fn of(text: &str, language: &str) -> Self {
        let stems: BTreeSet<String> = stems(text, language)
            .into_iter()
            .filter(|stem| stem.chars().count() >= 3)
            .collect();
        Self {
            themes: themes(text, language),
            stems: stems.into_iter().collect(),
        }
    }

    /// True when two requests ask for the same thing: the same themes of
    /// the lexicon (whatever the language), or, without themes, stems that
    /// mostly overlap (Jaccard at least 0.6).
    pub fn same_request(&self, other: &Self) -> bool {
        if !self.themes.is_empty() || !other.themes.is_empty() {
            return self.themes == other.themes;
        }
        let mine: BTreeSet<&String> = self.stems.iter().collect();
        let theirs: BTreeSet<&String> = other.stems.iter().collect();
        let union = mine.union(&theirs).count();
        union > 0 && mine.intersection(&theirs).count() as f64 / union as f64 >= 0.6
    }
}

/// Counts of themes, for tests and trends.
pub type ThemeCounts = BTreeMap<String, i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_detected() {
        assert_eq!(
            detect_language("The bill was far too high again this month and nobody answers"),
            "en"
        );
        assert_eq!(
            detect_language("Fakturan var alldeles för hög igen och ingen svarar i telefon"),
            "sv"
        );
        assert_eq!(
            detect_language("Ο λογαριασμός ήταν πολύ υψηλός και κανείς δεν απαντά"),
            "el"
        );
        assert_eq!(
            detect_language("Рачун је поново превисок и нико не одговара на позиве"),
            "sr"
        );
    }

    #[test]
    fn the_test_sentences_are_detected() {
        for (text, expected) in [
            (
                "My bill was wrong again, I was charged twice this month",
                "en",
            ),
            ("Fakturan är fel igen och ingen på kundtjänst svarar", "sv"),
            (
                "Räkningen för mobilen är alldeles för hög den här månaden",
                "sv",
            ),
            ("Ο λογαριασμός είναι πάλι λάθος και πολύ ακριβός", "el"),
            ("Рачун је поново погрешан, наплатили су ми двапут", "sr"),
            (
                "The network coverage at home is terrible, no signal at all",
                "en",
            ),
        ] {
            assert_eq!(detect_language(text), expected, "{text}");
        }
        let swedish = detect_language("Lägg till mörkt läge i appen, tack");
        assert_eq!(
            themes("Lägg till mörkt läge i appen, tack", &swedish),
            ["app", "dark_mode"],
            "detected as {swedish}"
        );
        let danish = detect_language("Regningen er forkert igen og jeg har ventet en time");
        assert!(
            themes(
                "Regningen er forkert igen og jeg har ventet en time",
                &danish
            )
            .contains(&"billing".to_string())
        );
    }

    #[test]
    fn themes_join_languages() {
        assert_eq!(themes("My bill is wrong again", "en"), ["billing"]);
        assert_eq!(themes("Fakturan är fel igen", "sv"), ["billing"]);
        assert_eq!(themes("Regningen er forkert", "da"), ["billing"]);
        assert_eq!(themes("Račun je pogrešan", "hr"), ["billing"]);
        assert_eq!(themes("Рачуна је погрешан", "sr"), ["billing"]);
        assert_eq!(themes("Ο λογαριασμός είναι λάθος", "el"), ["billing"]);
        assert_eq!(
            themes("Please add a dark mode to the app", "en"),
            ["app", "dark_mode"]
        );
        assert_eq!(
            themes("Lägg till mörkt läge i appen", "sv"),
            ["app", "dark_mode"]
        );
    }

    #[test]
    fn feature_requests_match_across_languages() {
        let english = Signature::of("Please add a dark mode to the app", "en");
        let swedish = Signature::of("Lägg till mörkt läge i appen", "sv");
        let other = Signature::of("Support for eSIM", "en");
        assert!(english.same_request(&swedish));
        assert!(!english.same_request(&other));
        let plain = Signature::of("widget for the lock screen", "en");
        assert!(plain.same_request(&Signature::of("lock screen widget", "en")));
    }
}
