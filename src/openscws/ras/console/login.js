// The console's login form: POST /api/v1/auth/login (JSON), which sets the session cookie
// (HttpOnly, SameSite=Strict); then the console at /. Failures say why, lockouts included.

const form = document.getElementById("login");
const error = document.getElementById("error");

function show(message) {
  error.textContent = message;
  error.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const body = {
    name: document.getElementById("name").value,
    password: document.getElementById("password").value,
  };
  let response;
  try {
    response = await fetch("/api/v1/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    show("The server does not answer.");
    return;
  }
  if (response.ok) {
    location.assign("/");
    return;
  }
  let detail = response.statusText;
  try {
    detail = (await response.json()).detail || detail;
  } catch {
    // Not a problem document: keep the status text.
  }
  document.getElementById("password").value = "";
  show(response.status === 429 ? `Locked: ${detail}` : detail);
});
