"""SDP text surgery that aiortc cannot do: rid simulcast (RFC 8851/8853) and what we refuse.

aiortc's SDP model drops ``a=rid`` and ``a=simulcast``; without them in the
answer a browser sends one encoding only. The SFU reads them from the
browser's raw offer and appends the matching ``recv`` lines to aiortc's
answer string. It also removes transport-cc from a publisher's offer: the SFU
sends REMB upstream, and a browser that negotiated transport-cc would wait
for feedback the SFU does not send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sfu.twcc import TRANSPORT_CC_URI

_RID_LINE = re.compile(r"^a=rid:([A-Za-z0-9_-]{1,32}) send\b", re.MULTILINE)
_SIMULCAST_LINE = re.compile(r"^a=simulcast:send (\S+)", re.MULTILINE)
_MID_LINE = re.compile(r"^a=mid:(\S+)", re.MULTILINE)
MAX_LAYERS = 4


@dataclass(frozen=True)
class SimulcastOffer:
    """The rids one m-line sends, lowest quality first as the browser listed them."""

    mid: str
    rids: tuple[str, ...]


def _sections(sdp: str) -> list[str]:
    """The session part followed by one string per m-section, line endings kept."""
    parts = re.split(r"(?=^m=)", sdp, flags=re.MULTILINE)
    return [p for p in parts if p]


def simulcast_offers(offer: str) -> dict[str, SimulcastOffer]:
    """Per mid, the rids of the m-lines that offer ``a=simulcast:send``."""
    result: dict[str, SimulcastOffer] = {}
    for section in _sections(offer):
        if not section.startswith("m=video"):
            continue
        mid = _MID_LINE.search(section)
        simulcast = _SIMULCAST_LINE.search(section)
        if mid is None or simulcast is None:
            continue
        declared = set(_RID_LINE.findall(section))
        rids = []
        for alternative in simulcast.group(1).split(";"):
            rid = alternative.split(",")[0].lstrip("~")
            if rid in declared and rid not in rids:
                rids.append(rid)
        if len(rids) > 1:
            result[mid.group(1)] = SimulcastOffer(mid.group(1), tuple(rids[:MAX_LAYERS]))
    return result


def accept_simulcast(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """Append ``a=rid:<id> recv`` and ``a=simulcast:recv`` to the answer's matching m-sections."""
    if not offers:
        return answer
    eol = "\r\n" if "\r\n" in answer else "\n"
    out = []
    for section in _sections(answer):
        mid = _MID_LINE.search(section)
        offer = offers.get(mid.group(1)) if mid else None
        if offer is not None and section.startswith("m=video") and "a=recvonly" in section:
            if not section.endswith(eol):
                section += eol
            section += "".join(f"a=rid:{rid} recv{eol}" for rid in offer.rids)
            section += f"a=simulcast:recv {';'.join(offer.rids)}{eol}"
        out.append(section)
    return "".join(out)


def without_transport_cc(offer: str) -> str:
    """The offer minus transport-cc (its extmap and its rtcp-fb lines)."""
    kept = []
    for line in offer.splitlines(keepends=True):
        if line.startswith("a=extmap:") and TRANSPORT_CC_URI in line:
            continue
        if line.startswith("a=rtcp-fb:") and line.rstrip().endswith(" transport-cc"):
            continue
        kept.append(line)
    return "".join(kept)
