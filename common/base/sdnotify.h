/* systemd readiness (sd_notify protocol) without libsystemd.
 *
 * A unit with Type=notify starts its dependents only once the daemon says
 * READY=1: systemd passes the path of a datagram socket in $NOTIFY_SOCKET
 * ('@' first means a Linux abstract socket) and reads newline-separated
 * KEY=VALUE assignments from it. Outside systemd the variable is unset and
 * every call is a no-op.
 */
#ifndef BT_SDNOTIFY_H
#define BT_SDNOTIFY_H

#include "status.h"

/* Sends `state` ("READY=1", "STOPPING=1", "STATUS=draining", several
 * joined by '\n') to $NOTIFY_SOCKET. BT_OK when sent, or when the variable
 * is unset or empty; BT_ERR_INVALID_ARG for a value that is not a unix
 * socket address; BT_ERR_IO when the send fails (both logged at warn).
 * A failure is not fatal: the caller goes on serving (systemd then times
 * the start out and says so). Safe from any thread; opens and closes its
 * own socket. */
bt_status_t bt_sdnotify(const char *state);

#endif
