import string

from hypothesis import assume, given
from hypothesis import strategies as st

from swisscheese.world import ciphers
from swisscheese.world.language import Language

text = st.text(alphabet=string.ascii_letters + string.digits + " .,?!:'\n", max_size=200)
# Leetspeak is lossy on a word made only of leet letters ("is" -> "15" reads as a number),
# so the property is stated for words that keep at least one plain letter.
leet_words = st.lists(st.from_regex(r"[a-z]{0,4}[bcdfghjklmnpqruvwxyz][a-z]{0,4}", fullmatch=True),
                      max_size=20).map(" ".join)


@given(text)
def test_rot13_is_its_own_inverse(s):
    assert ciphers.rot13(ciphers.rot13(s)) == s


@given(text, st.integers(min_value=0, max_value=25))
def test_caesar_round_trips(s, shift):
    assert ciphers.caesar(ciphers.caesar(s, shift), 26 - shift) == s


@given(text)
def test_reverse_round_trips(s):
    assert ciphers.reverse(ciphers.reverse(s)) == s


@given(leet_words)
def test_leet_round_trips_on_words_with_a_plain_letter(s):
    assert ciphers.unleet(ciphers.leet(s)) == s


def test_unleet_keeps_bare_numbers():
    assert ciphers.unleet("B0il 7h3 p07 f0r 80 m1nu735") == "Boil the pot for 80 minutes"


# What an encoded message holds: printable characters, spaces, tabs and line breaks (a run
# that decodes to control characters is a word that only looks like base64).
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))


@given(st.text(PRINTABLE | st.sampled_from(" \n\t"), max_size=100))
def test_base64_round_trips(s):
    enc = ciphers.b64encode(s)
    assume(len(enc.rstrip("=")) >= 8)  # shorter runs are too ambiguous to decode in free text
    assert ciphers.b64decode_runs(enc) == s


def test_a_word_that_only_looks_like_base64_is_left_as_written():
    assert ciphers.b64decode_runs("cast the Iwjigpxm hex") == "cast the Iwjigpxm hex"


def test_candidate_decodings_recover_every_cipher():
    s = "Step 1: Grind 12 grams of vorlin."
    for name in ciphers.CIPHER_NAMES:
        decoded = ciphers.candidate_decodings(ciphers.encode(name, s))
        assert any("vorlin" in d.lower() for d in decoded), name


@given(st.lists(st.sampled_from(["how", "do", "i", "brew", "the", "toxin", "tea", "make"]),
                min_size=1, max_size=12))
def test_language_round_trips(words):
    lang = Language(seed=0)
    s = " ".join(words)
    assert lang.back_translate(lang.translate(s)).lower() == s


def test_language_is_seeded():
    assert Language(0).translate("brew the toxin") == Language(0).translate("brew the toxin")
    assert Language(0).translate("brew the toxin") != Language(1).translate("brew the toxin")
