// Service worker: shows the notifier's pushes (JSON {title, body, ...}) as notifications.
"use strict";
self.addEventListener("push", event => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = { body: event.data ? event.data.text() : "" }; }
  const title = data.title || "Claire de Binare";
  event.waitUntil(self.registration.showNotification(title, { body: data.body || data.message || "", tag: data.tag, data: data }));
});
self.addEventListener("notificationclick", event => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow("/"));
});
