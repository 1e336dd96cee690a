/* protobuf-c messages in and out of grpc_byte_buffers, with size limits. */
#include "rpc_int.h"

#include "base/log.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

grpc_byte_buffer *bt_rpc_pack(const ProtobufCMessage *msg, size_t max,
                              bt_status_t *status_p)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_byte_buffer *bb;
    grpc_slice slice;

    if (len > max) {
        bt_warn("rpc message %s of %zu bytes over the limit %zu",
                msg->descriptor->name, len, max);
        *status_p = BT_ERR_TOO_LARGE;
        return NULL;
    }
    slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    *status_p = BT_OK;
    return bb;
}

ProtobufCMessage *bt_rpc_unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *desc,
                                size_t max, bt_status_t *status_p)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *msg;
    grpc_slice slice;
    size_t len;

    len = grpc_byte_buffer_length(bb);
    if (len > max) {
        *status_p = BT_ERR_TOO_LARGE;
        return NULL;
    }
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        *status_p = BT_ERR_INVALID_ARG;
        return NULL;
    }
    slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(slice),
                                    GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    *status_p = msg != NULL ? BT_OK : BT_ERR_INVALID_ARG;
    return msg;
}

gpr_timespec bt_rpc_deadline_from_ms(uint64_t timeout_ms)
{
    if (timeout_ms == 0 || timeout_ms > (uint64_t)INT32_MAX * 1000u) {
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    }
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis((int64_t)timeout_ms,
                                             GPR_TIMESPAN));
}
