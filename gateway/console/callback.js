// The page the identity provider sends the sign-in popup back to. It hands the code (or
// the IdP's refusal) and the `state` to the console tab that asked, over a channel only
// pages of this origin hear, and closes. The code is useless without the PKCE verifier,
// which never left that tab's memory; the tab also ignores any `state` but its own.
const params = new URLSearchParams(location.search);
const message = {
  state: params.get("state"),
  code: params.get("code"),
  error: params.get("error_description") || params.get("error"),
};
const channel = new BroadcastChannel("gateway-console-sso");
channel.postMessage(message);
channel.close();
history.replaceState(null, "", location.pathname); // the code leaves the address bar
document.getElementById("message").textContent = message.code
  ? "Signed in: you can close this window."
  : `Not signed in: ${message.error || "the identity provider sent no code"}.`;
window.close();
