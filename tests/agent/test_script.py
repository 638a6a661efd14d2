"""The rule-based reply policy: intent matching on transcripts, the shipped script, and one-line config errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sipagent.agent.assistant import DEFAULT_SCRIPT
from sipagent.agent.script import Reply, Script, normalize
from sipagent.errors import ConfigError

pytestmark = pytest.mark.unit

MINIMAL = """
greeting = "Hello."
fallback = "Sorry?"
reprompt = "Still there?"
goodbye = "Bye now."
no_operator = "No operator."
transfer = "Hold on."
fillers = ["um", "please"]

[[intents]]
name = "hours"
phrases = ["What are your opening hours?", "opening hours"]
keywords = ["open", "hours"]
answer = "Nine to five."

[[intents]]
name = "human"
phrases = ["talk to a human"]
keywords = ["person"]
answer = "Putting you through."
action = "transfer"

[[intents]]
name = "bye"
phrases = ["goodbye", "thank you goodbye"]
answer = "Goodbye!"
action = "hangup"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "script.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def script(tmp_path: Path) -> Script:
    return Script.load(write(tmp_path, MINIMAL))


@pytest.mark.parametrize(("said", "intent"), [
    ("what are your opening hours", "hours"),
    ("Um, what are your OPENING HOURS, please?", "hours"),  # case, punctuation and fillers do not matter
    ("when are you open", "hours"),  # no phrase: keyword "open"
    ("i'd like to talk to a human please", "human"),
    ("can i speak to a real person", "human"),
    ("goodbye", "bye"),
    ("ok thank you goodbye", "bye"),
])
def test_transcripts_match_their_intent(script: Script, said: str, intent: str) -> None:
    matched = script.match(said)
    assert matched is not None and matched.name == intent


def test_the_longest_phrase_wins_and_ties_go_to_the_first_intent(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[intents]]\nname = "hours_again"\nphrases = ["hours"]\nkeywords = ["open"]\nanswer = "x"\n'
    script = Script.load(write(tmp_path, text))
    # "opening hours" (2 words) beats the later one-word phrase "hours"; keyword ties go to the first listed.
    assert script.reply("opening hours today") == Reply("Nine to five.", None, "hours")
    assert script.reply("are you open").intent == "hours"


def test_replies_carry_the_action_and_unknown_speech_gets_the_fallback(script: Script) -> None:
    assert script.reply("talk to a human") == Reply("Putting you through.", "transfer", "human")
    assert script.reply("thank you goodbye") == Reply("Goodbye!", "hangup", "bye")
    assert script.reply("the weather in paris") == Reply("Sorry?")
    assert script.reply("") == Reply("Sorry?")
    # A phrase must match whole words: "hours" inside another word is not a hit.
    assert script.match("flowershours") is None


def test_phrases_are_normalized_for_the_recognizer_grammar(script: Script) -> None:
    assert script.phrases == ("what are your opening hours", "opening hours", "talk to a human", "goodbye",
                              "thank you goodbye")
    assert script.fillers == ("um", "please")
    assert normalize("  What's   THAT?! ") == "what's that"


def test_the_shipped_script_loads_and_covers_the_demo_intents() -> None:
    script = Script.load(DEFAULT_SCRIPT)
    raw = tomllib.loads(DEFAULT_SCRIPT.read_text(encoding="utf-8"))
    names = {i["name"] for i in raw["intents"]}
    assert {"opening_hours", "address", "appointment", "human", "help", "goodbye"} <= names
    # Every phrase of the file is answered by its own intent (no phrase is shadowed by another intent's).
    for entry in raw["intents"]:
        for phrase in entry["phrases"]:
            assert script.reply(phrase) == Reply(entry["answer"], entry.get("action"), entry["name"]), phrase
    assert script.reply("where are you located").intent == "address"
    assert "opening hours" in script.greeting and len(script.greeting.split()) < 30  # a few seconds at 165 wpm


@pytest.mark.parametrize(("text", "problem"), [
    ("greeting = ", "invalid TOML"),
    (MINIMAL.replace('greeting = "Hello."', ""), "'greeting' must be a non-empty string"),
    (MINIMAL.replace('"Sorry?"', '""'), "'fallback' must be a non-empty string"),
    (MINIMAL.replace('"Sorry?"', "3"), "'fallback' must be a non-empty string"),
    (MINIMAL + "colour = 1\n", "unknown key 'colour'"),
    (MINIMAL.split("[[intents]]")[0], "'intents' must be a non-empty array"),
    (MINIMAL.replace('action = "transfer"', 'action = "dance"'), "intent 'human': 'action' must be one of"),
    (MINIMAL.replace('phrases = ["talk to a human"]', "phrases = []"), "intent 'human': 'phrases' must be"),
    (MINIMAL.replace('phrases = ["talk to a human"]', 'phrases = ["?!"]'), "entry '?!' has no words"),
    (MINIMAL.replace('name = "human"', 'name = "hours"'), "intent name 'hours' is used twice"),
    (MINIMAL.replace('name = "human"', "nmae = 'x'"), "intent #2: unknown key 'nmae'"),
    (MINIMAL.replace('answer = "Nine to five."', ""), "intent 'hours': 'answer' must be"),
    (MINIMAL.replace('fillers = ["um", "please"]', 'fillers = "um"'), "'fillers' must be a list of strings"),
])
def test_bad_script_files_raise_one_line_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Script.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "\n" not in message


def test_a_missing_or_unreadable_script_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such agent script file$"):
        Script.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read the agent script"):
        Script.load(tmp_path)  # a directory
    (bad := tmp_path / "latin1.toml").write_bytes(b'greeting = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="latin1.toml: cannot read"):
        Script.load(bad)
