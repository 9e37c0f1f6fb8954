// The push page: register the service worker, show the VAPID key, subscribe through the dashboard.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = t => { document.getElementById("push-status").textContent = t; };
  let key = null;

  function urlB64ToBytes(s) {
    const pad = "=".repeat((4 - s.length % 4) % 4);
    const raw = atob((s + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, c => c.charCodeAt(0));
  }

  async function init() {
    const sw = document.getElementById("sw-state");
    if (!("serviceWorker" in navigator)) { sw.textContent = "not supported by this browser (or not a secure context)"; }
    else {
      try { await navigator.serviceWorker.register("/sw.js", { scope: "/" }); sw.textContent = "registered"; }
      catch (e) { sw.textContent = "not registered: " + e.message; }
    }
    try {
      const resp = await fetch("/api/push/key");
      const body = await resp.json();
      if (!resp.ok) throw new Error(body.error || resp.status);
      key = body.publicKey;
      document.getElementById("vapid-key").textContent = key;
    } catch (e) { document.getElementById("vapid-key").textContent = "unavailable (" + e.message + ")"; }
  }

  async function subscribe() {
    if (!key) { status("the notifier has no VAPID key: web push is disabled there"); return; }
    try {
      const reg = await navigator.serviceWorker.ready;
      if ((await Notification.requestPermission()) !== "granted") { status("notifications were not allowed"); return; }
      const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: urlB64ToBytes(key) });
      const resp = await fetch("/api/push/subscribe", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(sub.toJSON()) });
      const body = await resp.json();
      status(resp.ok ? "subscribed: alerts will reach this browser" : "refused: " + (body.error || resp.status));
    } catch (e) { status("could not subscribe: " + e.message); }
  }

  const btn = document.getElementById("subscribe");
  if (btn) btn.addEventListener("click", subscribe);
  init();
})();
