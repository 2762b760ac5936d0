// The week calendar's geometry comes as data attributes: the Content-Security-Policy
// forbids inline style attributes, so it is applied here through the CSSOM.
for (const week of document.querySelectorAll(".week[data-hours]")) {
  week.style.setProperty("--hours", week.dataset.hours);
}
for (const block of document.querySelectorAll(".booking-block[data-top]")) {
  block.style.top = `${block.dataset.top}%`;
  block.style.height = `${block.dataset.height}%`;
}

// Copy buttons of the booking page: copy the link of the input named by data-copy.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand("copy"); // older tablets, or a page not in a secure context
  }
  const label = button.textContent;
  button.textContent = button.dataset.copied;
  setTimeout(() => { button.textContent = label; }, 2000);
});
