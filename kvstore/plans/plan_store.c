/* The plans file, <dir>/plans.json: every (model, role) with a plan in
 * force, its version and figures, so that a restarted kvstore serves the
 * same versions and numbers the next one after them. Written whole to a
 * temporary file, synced, renamed over the old one, the folder synced:
 * a crash leaves the old file or the new one, never half of one. The
 * history is not kept: it rebuilds from the next reports. */
#include "plan_book_int.h"

#include "base/json.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BT_PBOOK_FORMAT   "baton-placement-plans/1"
#define BT_PBOOK_FILE_MAX (256u << 20)

static json_t *bt_pbook_entry_json(const bt_pbook_entry_t *e)
{
    json_t *o = json_object(), *plan = bt_placement_plan_to_json(e->plan, NULL);

    if (o == NULL || plan == NULL ||
        json_object_set_new(o, "model", json_string(e->model)) != 0 ||
        json_object_set_new(o, "role", json_integer(e->role)) != 0 ||
        json_object_set_new(o, "version", json_integer((json_int_t)e->version)) != 0 ||
        json_object_set_new(o, "created_unix_ms",
                            json_integer((json_int_t)e->created_unix_ms)) != 0 ||
        json_object_set_new(o, "n_layers", json_integer(e->n_layers)) != 0 ||
        json_object_set_new(o, "n_experts", json_integer(e->n_experts)) != 0 ||
        json_object_set_new(o, "planned_balancedness",
                            json_real(e->planned_balancedness)) != 0 ||
        json_object_set_new(o, "moved", json_integer(e->moved)) != 0 ||
        json_object_set_new(o, "plan", plan) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static bt_status_t bt_pbook_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return BT_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return BT_OK;
}

static void bt_pbook_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

bt_status_t bt_pbook_store_save(const bt_pbook_t *book, char *err,
                                size_t err_size)
{
    json_t *root = json_object(), *plans = json_array();
    char path[4096], tmp[4200];
    char *text = NULL;
    bt_status_t st = BT_ERR_NO_MEMORY;
    int fd = -1;

    if (root == NULL || plans == NULL) {
        goto out;
    }
    for (size_t i = 0; i < book->n; i++) {
        json_t *o;

        if (book->entries[i].plan == NULL) {
            continue;
        }
        if ((o = bt_pbook_entry_json(&book->entries[i])) == NULL ||
            json_array_append_new(plans, o) != 0) {
            goto out;
        }
    }
    if (json_object_set_new(root, "format", json_string(BT_PBOOK_FORMAT)) != 0 ||
        json_object_set(root, "plans", plans) != 0 ||
        (text = json_dumps(root, JSON_COMPACT)) == NULL) {
        goto out;
    }
    snprintf(path, sizeof(path), "%s/plans.json", book->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    st = BT_ERR_IO;
    if (mkdir(book->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "cannot create %s: %s", book->dir, strerror(errno));
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || bt_pbook_write_all(fd, text, strlen(text)) != BT_OK ||
        fsync(fd) != 0) {
        snprintf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, err_size, "cannot rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    bt_pbook_sync_dir(book->dir);
    st = BT_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (st == BT_ERR_IO) {
        unlink(tmp);
    } else if (st == BT_ERR_NO_MEMORY) {
        snprintf(err, err_size, "out of memory writing the plans file");
    }
    free(text);
    json_decref(plans);
    json_decref(root);
    return st;
}

/* One entry of the file into the book (which has room). */
static bt_status_t bt_pbook_entry_load(bt_pbook_t *book, const json_t *o,
                                       char *err, size_t err_size)
{
    static const char *const keys[] = {
        "model", "role", "version", "created_unix_ms", "n_layers",
        "n_experts", "planned_balancedness", "moved", "plan", NULL,
    };
    bt_pbook_entry_t *e = &book->entries[book->n];
    const char *model;
    int64_t role, version, created, layers, experts, moved;
    double planned = 0;
    json_t *plan;
    bt_status_t st;

    if ((st = bt_json_check_keys(o, keys, err, err_size)) != BT_OK ||
        (st = bt_json_get_string(o, "model", true, &model, err, err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "role", true, 1, 3, &role, err, err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "version", true, 1, INT64_MAX, &version, err,
                              err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "created_unix_ms", true, 0, INT64_MAX, &created,
                              err, err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "n_layers", true, 1, BT_PLACEMENT_MAX_LAYERS,
                              &layers, err, err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "n_experts", true, 1, BT_PLACEMENT_MAX_EXPERTS,
                              &experts, err, err_size)) != BT_OK ||
        (st = bt_json_get_number(o, "planned_balancedness", true, 0, 1, &planned,
                                 err, err_size)) != BT_OK ||
        (st = bt_json_get_int(o, "moved", true, 0, INT64_MAX, &moved, err,
                              err_size)) != BT_OK ||
        (st = bt_json_get_object(o, "plan", true, &plan, err, err_size)) != BT_OK) {
        return st;
    }
    if (strlen(model) > BT_PBOOK_MODEL_MAX ||
        bt_pbook_find(book, model, (int)role, &(bt_pbook_view_t){ 0 })) {
        snprintf(err, err_size, "model '%.64s' role %d: too long a name or "
                 "listed twice", model, (int)role);
        return BT_ERR_INVALID_ARG;
    }
    memset(e, 0, sizeof(*e));
    st = bt_placement_plan_from_json(plan, (int32_t)layers, (int32_t)experts,
                                     &e->plan, err, err_size);
    if (st != BT_OK) {
        return st;
    }
    snprintf(e->model, sizeof(e->model), "%s", model);
    e->role = (int)role;
    e->n_layers = (int32_t)layers;
    e->n_experts = (int32_t)experts;
    e->n_devices = e->plan->n_devices;
    e->slots = e->plan->slots;
    e->version = e->plan->version = (uint64_t)version;
    e->created_unix_ms = (uint64_t)created;
    e->planned_balancedness = planned;
    e->moved = moved;
    book->n++;
    return BT_OK;
}

bt_status_t bt_pbook_store_load(bt_pbook_t *book, char *err, size_t err_size)
{
    char path[4096], why[BT_JSON_ERR_SIZE];
    const char *format;
    json_t *root = NULL, *plans, *o;
    bt_status_t st;
    size_t i;

    snprintf(path, sizeof(path), "%s/plans.json", book->dir);
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        return BT_OK;   /* no plan was ever published here */
    }
    st = bt_json_load_file(path, BT_PBOOK_FILE_MAX, &root, why, sizeof(why));
    if (st == BT_OK &&
        (st = bt_json_get_string(root, "format", true, &format, why,
                                 sizeof(why))) == BT_OK &&
        strcmp(format, BT_PBOOK_FORMAT) != 0) {
        snprintf(why, sizeof(why), "format '%.64s' is not " BT_PBOOK_FORMAT, format);
        st = BT_ERR_INVALID_ARG;
    }
    if (st == BT_OK) {
        st = bt_json_get_array(root, "plans", true, &plans, why, sizeof(why));
    }
    if (st == BT_OK && json_array_size(plans) > BT_PBOOK_MAX_ENTRIES) {
        snprintf(why, sizeof(why), "%zu plans (at most %d)",
                 json_array_size(plans), BT_PBOOK_MAX_ENTRIES);
        st = BT_ERR_INVALID_ARG;
    }
    json_array_foreach(st == BT_OK ? plans : NULL, i, o) {
        if ((st = bt_pbook_entry_load(book, o, why, sizeof(why))) != BT_OK) {
            break;
        }
    }
    if (st != BT_OK) {
        snprintf(err, err_size, "%s: %s", path, why);
    } else if (book->n > 0) {
        bt_info("placement: %zu plan(s) read back from %s", book->n, path);
    }
    json_decref(root);
    return st;
}
