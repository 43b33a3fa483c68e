"""YouTube's word-timed WebVTT -> MERLOT subtitles (tvts.data.vtt)."""
from pathlib import Path

import pytest

from tvts.data.formats.common import FormatError
from tvts.data.vtt import parse_time, parse_vtt, read_vtt

FIXTURE = Path(__file__).parent / "fixtures" / "youtube_asr.en.vtt"

# Checked by hand against the fixture: each word once; a line's first word at its cue's start,
# the others at their inline times; the ~10 ms repeat cues and the context lines add nothing;
# `[Music]` (a plain new line) and `done` (after an hours-long timestamp) get their cue's start.
EXPECTED = [
    ("okay", 0.0), ("so", 0.24), ("today", 0.48), ("we", 0.9), ("fold", 1.02),
    ("a", 2.07), ("paper", 2.31), ("crane", 2.64), ("step", 3.3), ("by", 3.51), ("step", 3.72),
    ("[Music]", 4.12),
    ("crease", 7.01), ("it", 7.4), ("&", 59.99), ("fold", 60.1), ("again", 61.25),
    ("done", 3600.0),
]


def test_fixture_words_and_times_match_the_hand_checked_list():
    assert [(w["word"], w["time"]) for w in read_vtt(FIXTURE)] == EXPECTED


def test_times_never_decrease_on_the_fixture():
    times = [w["time"] for w in read_vtt(FIXTURE)]
    assert times == sorted(times)


def test_a_repeated_line_with_inline_times_is_new_speech():
    vtt = ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n \nyes<00:00:01.500><c> yes</c>\n\n"
           "00:00:02.000 --> 00:00:03.000\nyes yes\nyes<00:00:02.500><c> yes</c>\n")
    assert [(w["word"], w["time"]) for w in parse_vtt(vtt)] == [("yes", 1.0), ("yes", 1.5), ("yes", 2.0), ("yes", 2.5)]


def test_captions_without_word_times_keep_every_line_at_the_cue_start():
    vtt = "WEBVTT\n\nNOTE a comment\n\n00:00:05.000 --> 00:00:07.000\nHello there\nGeneral Kenobi\n"
    assert [(w["word"], w["time"]) for w in parse_vtt(vtt)] == [
        ("Hello", 5.0), ("there", 5.0), ("General", 5.0), ("Kenobi", 5.0)]


@pytest.mark.parametrize("text, message", [("not a vtt\n", "no WEBVTT header"),
                                           ("WEBVTT\n\n00:00:xx --> 00:00:01.000\nhi\n", "bad cue timing")])
def test_malformed_files_name_the_problem(text, message):
    with pytest.raises(FormatError, match=message):
        parse_vtt(text, "clip.en.vtt")


def test_parse_time():
    assert parse_time("01:02:03.500") == 3723.5
    assert parse_time("02:03.250") == 123.25
    with pytest.raises(ValueError):
        parse_time("1.5")
