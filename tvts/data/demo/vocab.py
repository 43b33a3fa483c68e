"""The demo world's vocabulary: shapes, actions, colours, sentences, mishearings, SSV2 classes.

These are the allowed values that `DemoConfig` checks against and the defaults it starts
from; they sit apart from the config so that the narration and the SSV2 class names can
be read (and tested) without the sizes and probabilities around them.
"""
from __future__ import annotations

SHAPES = ("circle", "ring", "square", "triangle", "bar", "cross")
ROTATION_INVARIANT = frozenset({"circle", "ring"})  # rotating these shows nothing
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink",
           "rotate_cw", "rotate_ccw", "appear", "disappear")


def default_colors() -> dict[str, list]:
    return {"red": [220, 50, 50], "green": [40, 180, 70], "blue": [50, 90, 230],
            "yellow": [235, 215, 40], "purple": [165, 70, 205]}


def default_templates() -> dict[str, list]:
    # No order words ("first", "then", "again", "finally"): a transcript must not give away
    # the order of events (tvts.data.demo.plans).
    return {
        "move_left": ["The {obj} moves to the left.", "The {obj} slides left.", "The {obj} is going left."],
        "move_right": ["The {obj} moves to the right.", "The {obj} slides right.", "The {obj} is going right."],
        "move_up": ["The {obj} moves up.", "The {obj} rises.", "The {obj} is going up."],
        "move_down": ["The {obj} moves down.", "The {obj} sinks.", "The {obj} is going down."],
        "grow": ["The {obj} grows.", "The {obj} gets bigger.", "The {obj} is getting larger."],
        "shrink": ["The {obj} shrinks.", "The {obj} gets smaller.", "The {obj} is getting tiny."],
        "rotate_cw": ["The {obj} turns clockwise.", "The {obj} spins clockwise.", "The {obj} rotates clockwise."],
        "rotate_ccw": ["The {obj} turns counterclockwise.", "The {obj} spins counterclockwise.",
                       "The {obj} rotates anticlockwise."],
        "appear": ["A {obj} appears.", "Here comes a {obj}.", "A {obj} pops into view."],
        "disappear": ["The {obj} disappears.", "The {obj} vanishes.", "The {obj} goes away."],
    }


def default_mishearings() -> dict[str, list]:
    return {"red": ["read", "bread"], "green": ["grin"], "blue": ["blew"], "yellow": ["hello"],
            "purple": ["people"], "square": ["scare", "where"], "circle": ["circus"],
            "triangle": ["tangle"], "bar": ["car", "far"], "left": ["lift", "lest"],
            "right": ["write", "bright"], "up": ["op"], "down": ["town"], "bigger": ["digger"],
            "smaller": ["taller"], "grows": ["rose"], "shrinks": ["drinks"], "spins": ["pins"],
            "clockwise": ["clock"], "vanishes": ["varnishes"], "rises": ["prizes"], "sinks": ["thinks"]}


SSV2_PHRASES = {"move_left": "[something] moving left", "move_right": "[something] moving right",
                "grow": "[something] growing", "shrink": "[something] shrinking"}


def ssv2_order_template(first: str, second: str) -> str:
    """The SSV2-style template of the class "`first`, then `second`" (two events, two actors)."""
    text = f"{SSV2_PHRASES[first]}, then {SSV2_PHRASES[second]}"
    return text.replace("[something]", "[Something]", 1)


def default_ssv2_classes() -> dict[str, list]:
    # layout "events": every ordered pair of two different actions from SSV2_PHRASES, each
    # action its own event by its own actor (12 classes). Each class has its time reverse
    # (A then B / B then A) among the classes: the same actors, actions and frames, only
    # in the other order, so neither one frame nor the unordered set of frames separates
    # them; telling the pair needs motion (>= 2 frames per event) and the order needs
    # both events (docs/demo-corpus.md, "SSV2-format classes are ordered pairs of events").
    return {ssv2_order_template(a, b): [a, b] for a in SSV2_PHRASES for b in SSV2_PHRASES if a != b}


def ssv2_class_name(template: str) -> str:
    """The SSV2 class name of a template: the template with `[` and `]` removed."""
    return template.replace("[", "").replace("]", "")
