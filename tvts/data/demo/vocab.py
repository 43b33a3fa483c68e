"""The demo world's vocabulary: shapes, actions, colours, sentences, mishearings, SSV2 classes.

These are the allowed values that `DemoConfig` checks against and the defaults it starts
from; they sit apart from the config so that the narration and the SSV2 class names can
be read (and tested) without the sizes and probabilities around them.
"""
from __future__ import annotations

SHAPES = ("circle", "ring", "square", "triangle", "bar", "cross")
ROTATION_INVARIANT = frozenset({"circle", "ring"})  # rotating these shows nothing
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink",
           "rotate_cw", "rotate_ccw", "appear", "disappear", "fall", "shatter")
# Events whose time reverse is no event of the world (a shape that leaps off the floor and
# hovers; pieces that fly together into a whole): the world's arrow of time. Every other
# action reversed is another action (left <-> right, grow <-> shrink, appear <-> disappear).
IRREVERSIBLE = frozenset({"fall", "shatter"})


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
        "fall": ["The {obj} falls to the floor.", "The {obj} drops and bounces.", "The {obj} tumbles down."],
        "shatter": ["The {obj} breaks into pieces.", "The {obj} shatters.", "The {obj} bursts apart."],
    }


def default_mishearings() -> dict[str, list]:
    return {"red": ["read", "bread"], "green": ["grin"], "blue": ["blew"], "yellow": ["hello"],
            "purple": ["people"], "square": ["scare", "where"], "circle": ["circus"],
            "triangle": ["tangle"], "bar": ["car", "far"], "left": ["lift", "lest"],
            "right": ["write", "bright"], "up": ["op"], "down": ["town"], "bigger": ["digger"],
            "smaller": ["taller"], "grows": ["rose"], "shrinks": ["drinks"], "spins": ["pins"],
            "clockwise": ["clock"], "vanishes": ["varnishes"], "rises": ["prizes"], "sinks": ["thinks"],
            "falls": ["false"], "breaks": ["brakes"], "shatters": ["shutters"]}


SSV2_PHRASES = {"move_left": "[something] moving left", "move_right": "[something] moving right",
                "grow": "[something] growing", "shrink": "[something] shrinking",
                "fall": "[something] falling", "shatter": "[something] breaking"}
# The default classes' actions (corpus v3): two reversible ones, each the other's reverse, and
# two irreversible ones, so that most clips reversed look like no clip of the set.
SSV2_ACTIONS = ("move_left", "move_right", "fall", "shatter")


def ssv2_order_template(first: str, second: str) -> str:
    """The SSV2-style template of the class "`first`, then `second`" (two events, two actors)."""
    text = f"{SSV2_PHRASES[first]}, then {SSV2_PHRASES[second]}"
    return text.replace("[something]", "[Something]", 1)


def default_ssv2_classes() -> dict[str, list]:
    # layout "events": every ordered pair of two different actions from SSV2_ACTIONS, each
    # action its own event by its own actor (12 classes). Each class has its order reverse
    # (A then B / B then A) among the classes: the same kinds of actors, actions and frames,
    # only in the other order, so neither one frame nor the unordered set of frames separates
    # them; telling the pair needs motion (>= 2 frames per event) and the order needs
    # both events (docs/demo-corpus.md, "SSV2-format classes are ordered pairs of events").
    return {ssv2_order_template(a, b): [a, b] for a in SSV2_ACTIONS for b in SSV2_ACTIONS if a != b}


def reversed_pairs(classes: dict[str, list]) -> list[tuple[str, str]]:
    """The pairs of class names whose action lists are each other's reverse ("A, then B" / "B, then A").

    Args:
        classes: template -> actions (`DemoConfig.ssv2_classes`).
    Returns:
        (name, reversed name) pairs, each once, sorted; a class without its reverse is in none.
    """
    by_steps = {tuple(steps): ssv2_class_name(t) for t, steps in classes.items()}
    pairs = {tuple(sorted((name, by_steps[steps[::-1]]))) for steps, name in by_steps.items()
             if steps[::-1] in by_steps and steps[::-1] != steps}
    return sorted(pairs)


def ssv2_class_name(template: str) -> str:
    """The SSV2 class name of a template: the template with `[` and `]` removed."""
    return template.replace("[", "").replace("]", "")
