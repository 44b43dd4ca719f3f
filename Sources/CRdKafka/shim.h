#ifndef AGENTJOBS_CRDKAFKA_SHIM_H
#define AGENTJOBS_CRDKAFKA_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/*
 * rd_kafka_producev() is variadic and built from macros, neither of which Swift can call.
 * This wrapper fixes the argument list we use: a copied key/value (RD_KAFKA_MSG_F_COPY, so the
 * Swift buffers need not outlive the call), optional headers (owned by librdkafka on success
 * only) and a per-message opaque that comes back in the delivery report.
 */
static inline rd_kafka_resp_err_t agentjobs_rd_kafka_produce(rd_kafka_t *rk,
                                                             const char *topic,
                                                             int32_t partition,
                                                             const void *key,
                                                             size_t key_len,
                                                             const void *value,
                                                             size_t value_len,
                                                             rd_kafka_headers_t *headers,
                                                             void *msg_opaque) {
        if (headers != NULL) {
                return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                         RD_KAFKA_V_PARTITION(partition),
                                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_KEY(key, key_len),
                                         RD_KAFKA_V_VALUE((void *)value, value_len),
                                         RD_KAFKA_V_HEADERS(headers),
                                         RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        }
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len),
                                 RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
}

/* Integer macros with casts that Swift does not import. */
static const int32_t AGENTJOBS_RD_KAFKA_PARTITION_UA = RD_KAFKA_PARTITION_UA;
static const int64_t AGENTJOBS_RD_KAFKA_OFFSET_STORED = RD_KAFKA_OFFSET_STORED;
static const int AGENTJOBS_RD_KAFKA_PURGE_ALL = RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT;
static const int AGENTJOBS_RD_KAFKA_PURGE_QUEUE = RD_KAFKA_PURGE_F_QUEUE;

#endif
