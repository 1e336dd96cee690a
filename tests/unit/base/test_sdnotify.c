/* bt_sdnotify against a real datagram socket, as systemd would bind it. */
#include "base/sdnotify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Binds a SOCK_DGRAM socket at `name` (a path, or '@' + abstract name). */
static int bind_listener(const char *name)
{
    struct sockaddr_un sa;
    struct timeval tv = {5, 0};
    size_t len = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    assert_true(len < sizeof(sa.sun_path));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@') {
        sa.sun_path[0] = '\0';
    } else {
        len++;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
    /* a lost datagram fails the test instead of hanging it */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_path_socket(void **state)
{
    char dir[] = "/tmp/bt-sdnotify.XXXXXX";
    char path[64];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/notify", dir);
    fd = bind_listener(path);
    assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_OK);
    expect_datagram(fd, "READY=1");
    assert_int_equal(bt_sdnotify("STOPPING=1\nSTATUS=draining"), BT_OK);
    expect_datagram(fd, "STOPPING=1\nSTATUS=draining");
    close(fd);
    unlink(path);
    rmdir(dir);
}

static void test_abstract_socket(void **state)
{
    char name[64];
    int fd;

    (void)state;
    snprintf(name, sizeof(name), "@bt-sdnotify-test-%ld", (long)getpid());
    fd = bind_listener(name);
    assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_OK);
    expect_datagram(fd, "READY=1");
    close(fd);
}

static void test_unset_is_a_no_op(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_OK);
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_OK);
}

static void test_bad_addresses(void **state)
{
    char longpath[200];

    (void)state;
    assert_int_equal(setenv("NOTIFY_SOCKET", "relative/notify", 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_ERR_INVALID_ARG);
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", longpath, 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_ERR_INVALID_ARG);
    /* nobody listens there: the send fails, the caller goes on */
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent-bt-sdnotify/notify", 1), 0);
    assert_int_equal(bt_sdnotify("READY=1"), BT_ERR_IO);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_unset_is_a_no_op),
        cmocka_unit_test(test_bad_addresses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
