"""Common short English words: the vocabulary that built-in creative answers and experts use.

Checkers accept any alphabetic word; this list only has to cover 25 initial letters (all but x)
so that every acrostic and letter-words prompt has a sample answer.
"""

from __future__ import annotations

WORDS: tuple[str, ...] = tuple(
    """
    able acid act add age air all and ant any apple arm art ask bag ball band bank bat bed
    bee bell big bird black blue boat body bone book box boy bread bus cake call camp can
    cap car card care cat cold cook cow cup cut dark day deep desk dog door down draw dream
    drum duck ear east easy eat egg end eye face fact fall farm fast fish five flag fly food
    foot fork fox free frog fun game gate gift girl glad goat gold good green grow hand hat
    head hen high hill home hope horse hot idea ink iron island jam jar job joke jump just
    keep key kick kid king kite lake lamp land late leaf left leg lion long love map milk
    mind moon mouse name near nest net new night nose note oak ocean off oil old one open
    owl page park pen pig pink plan play pot quick quiet quit queen rain red rice ring road
    rock room rose run sand sea seed ship shoe sing sky snow soft song star sun table tall
    tea ten tent tiger time toy tree true umbrella under unit up use van vase very view
    village vote walk warm water west wind wolf word yard year yell yellow yes young zebra
    zero zone zoo
""".split()
)
