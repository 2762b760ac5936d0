// Stroke icons drawn for visio (24×24 grid, currentColor), built as DOM
// nodes so the page needs no inline markup. "-off" adds a slash.

const PATHS = {
  mic: "M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3z M5 11a7 7 0 0 0 14 0 M12 18v3 M8 21h8",
  cam: "M3 7h12v10H3z M15 10.5l6-3.5v10l-6-3.5",
  hand: "M8 12V5.5a1.5 1.5 0 0 1 3 0V11 M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5 M14 10.5V5.5a1.5 1.5 0 0 1 3 0V13 M17 11.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-7 7h-1a6.5 6.5 0 0 1-5.5-3L4 14.5a1.5 1.5 0 0 1 2.6-1.5L8 15",
  chat: "M4 5h16v11H10l-6 4z",
  speaker: "M3 4h18v11H3z M4 19h4 M10 19h4 M16 19h4",
  screen: "M3 4h18v12H3z M8 20h8 M12 16v4 M9 10l3-3 3 3 M12 7v6",
  left: "M15 5l-7 7 7 7",
  right: "M9 5l7 7-7 7",
  people: "M9 11a3.5 3.5 0 1 0 0-7a3.5 3.5 0 0 0 0 7z M2.5 20a6.5 6.5 0 0 1 13 0 M15.5 4.3a3.5 3.5 0 0 1 0 6.4 M18 13.5a6.5 6.5 0 0 1 3.5 6.5",
};
const SLASH = "M3 3l18 18";
const SVG_NS = "http://www.w3.org/2000/svg";

export function icon(name) {
  const off = name.endsWith("-off");
  const base = off ? name.slice(0, -4) : name;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("svg-icon");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", off ? `${PATHS[base]} ${SLASH}` : PATHS[base]);
  svg.append(path);
  return svg;
}

// Replaces the icon inside a [data-icon] holder.
export function setIcon(holder, name) {
  if (holder.dataset.shown === name) return;
  holder.dataset.shown = name;
  holder.replaceChildren(icon(name));
}
