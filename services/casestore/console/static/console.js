// Casewire console: copy buttons and the secret's show/hide toggle. Everything else is plain
// HTML forms, so the console works without this file too.
"use strict";

function announce(id, message) {
  const status = document.querySelector(`[data-copied-for="${id}"]`);
  if (status) status.textContent = message;
}

async function copy(id) {
  const source = document.getElementById(id);
  const value = "value" in source && source.tagName !== "PRE" ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(value);
    announce(id, "Copied.");
  } catch (error) {
    // No clipboard access (e.g. not a secure context): select it for Ctrl-C instead.
    if (source.select) source.select();
    announce(id, "Selected: press Ctrl-C (or Cmd-C) to copy.");
  }
}

function reveal(button) {
  const input = document.getElementById(button.dataset.reveal);
  const shown = input.type === "text";
  input.type = shown ? "password" : "text";
  button.textContent = shown ? "Show" : "Hide";
  button.setAttribute("aria-pressed", String(!shown));
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy], button[data-reveal]");
  if (!button) return;
  if (button.dataset.copy) copy(button.dataset.copy);
  else reveal(button);
});
