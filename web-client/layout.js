// Which tiles the stage shows: a paginated grid, or one featured tile (the
// active speaker, or a shared screen) above a filmstrip of thumbnails that
// scrolls sideways (a swipe on a tablet). Tiles off the current page are
// hidden and thumbnails scrolled out of the strip are clipped, so the
// TileWatcher reports both invisible and the SFU stops sending their video.

const PAGE_SIZE_LANDSCAPE = 9;
const PAGE_SIZE_PORTRAIT = 8;

// Tiles per grid page: ?per_page=N (1-25) if given, else by orientation.
export function defaultPageSize() {
  const asked = Number.parseInt(new URLSearchParams(location.search).get("per_page"), 10);
  if (asked >= 1 && asked <= 25) return asked;
  return innerWidth >= innerHeight ? PAGE_SIZE_LANDSCAPE : PAGE_SIZE_PORTRAIT;
}

// The slice of items on page (0-based) and the page count, page clamped.
export function paginate(items, pageSize, page) {
  const pages = Math.max(1, Math.ceil(items.length / pageSize));
  const current = Math.min(Math.max(page, 0), pages - 1);
  return { page: current, pages, shown: items.slice(current * pageSize, (current + 1) * pageSize) };
}

// Columns that make n 16:9 tiles as large as possible in width × height.
export function bestColumns(n, width, height, gap) {
  let best = { columns: 1, tileWidth: 0 };
  for (let columns = 1; columns <= Math.max(1, n); columns += 1) {
    const rows = Math.ceil(n / columns);
    const byWidth = (width - gap * (columns - 1)) / columns;
    const byHeight = ((height - gap * (rows - 1)) / rows) * (16 / 9);
    const tileWidth = Math.min(byWidth, byHeight);
    if (tileWidth > best.tileWidth) best = { columns, tileWidth };
  }
  return best;
}

const MIN_TILE_WIDTH = 200; // below this the page scrolls rather than shrinking tiles
const GRID_GAP = 12;

// Puts elements into parent in this order, moving only those out of place
// (a playing <video> moved within one task keeps playing).
function arrange(parent, elements) {
  elements.forEach((element, i) => {
    if (parent.children[i] !== element) parent.insertBefore(element, parent.children[i] ?? null);
  });
}

export class StageLayout {
  // container: the #tiles element; strip: {root, list, prev, next}, the
  // filmstrip and its arrows; pager: {root, prev, next, label}; t: translator.
  constructor(container, strip, pager, t) {
    this.container = container;
    this.strip = strip.list;
    this.stripRoot = strip.root;
    this.stripArrows = { prev: strip.prev, next: strip.next };
    const slide = (direction) => this.strip.scrollBy({
      left: direction * this.strip.clientWidth * 0.8, behavior: "smooth" });
    strip.prev.addEventListener("click", () => slide(-1));
    strip.next.addEventListener("click", () => slide(1));
    this.strip.addEventListener("scroll", () => this.showArrows(), { passive: true });
    new ResizeObserver(() => this.showArrows()).observe(this.strip);
    this.pager = pager;
    this.t = t;
    this.view = "grid"; // "grid" | "speaker"; a presentation forces the featured layout
    this.page = 0;
    this.pages = 1;
    pager.prev.addEventListener("click", () => this.turn(-1));
    pager.next.addEventListener("click", () => this.turn(1));
    this.apply = () => {};
  }

  // Sizes the grid so its tiles fill the space between the top bar and the
  // dock (n = 0: leave it to the stylesheet).
  fit(n) {
    const style = this.container.style;
    if (!n) {
      style.gridTemplateColumns = "";
      style.justifyContent = "";
      return;
    }
    const top = this.container.getBoundingClientRect().top + scrollY;
    const dock = document.querySelector(".dock")?.offsetHeight ?? 0;
    const pager = this.pager.root.hidden ? 0 : 64;
    const height = innerHeight - top - dock - pager - 16;
    const width = this.container.clientWidth;
    const { columns, tileWidth } = bestColumns(n, width, height, GRID_GAP);
    const size = Math.max(Math.floor(tileWidth), Math.min(MIN_TILE_WIDTH, width));
    style.gridTemplateColumns = `repeat(${columns}, ${size}px)`;
    style.justifyContent = "safe center";
  }

  // The arrows say there is more to either side (and scroll there).
  showArrows() {
    const { scrollLeft, scrollWidth, clientWidth } = this.strip;
    this.stripArrows.prev.hidden = scrollLeft <= 1;
    this.stripArrows.next.hidden = scrollLeft + clientWidth >= scrollWidth - 1;
  }

  turn(delta) {
    this.page += delta;
    this.apply();
  }

  // figures: every tile in order (own first); featured: the figure to show
  // large in speaker or presentation layout (null in the grid).
  render(figures, featured) {
    const speakerLayout = featured != null;
    this.container.classList.toggle("view-speaker", speakerLayout);
    this.stripRoot.hidden = !speakerLayout;
    for (const figure of figures) figure.classList.toggle("featured", figure === featured);
    if (speakerLayout) {
      // Every thumbnail is in the strip: scrolling, not pages, reaches them.
      const others = figures.filter((f) => f !== featured);
      arrange(this.container, [featured]);
      arrange(this.strip, others);
      for (const figure of figures) figure.hidden = false;
      this.page = 0;
      this.pages = 1;
      this.fit(0);
      this.pager.root.hidden = true;
      this.showArrows();
      return;
    }
    arrange(this.container, figures);
    const { page, pages, shown } = paginate(figures, defaultPageSize(), this.page);
    this.page = page;
    this.pages = pages;
    const visible = new Set(shown);
    for (const figure of figures) figure.hidden = !visible.has(figure);
    this.fit(shown.length);
    this.pager.root.hidden = pages <= 1;
    this.pager.prev.disabled = page === 0;
    this.pager.next.disabled = page >= pages - 1;
    this.pager.label.textContent = this.t("pageOf", { page: page + 1, pages });
  }
}
