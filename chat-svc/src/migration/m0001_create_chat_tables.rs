use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    MessageId,
    RoomId,
    Seq,
    SenderId,
    Text,
    ClientMessageId,
    Status,
    CreatedAt,
    DeletedAt,
    DeletedBy,
}

#[derive(DeriveIden)]
enum RoomSequences {
    Table,
    RoomId,
    LastSeq,
}

#[derive(DeriveIden)]
enum MemberCursors {
    Table,
    RoomId,
    UserId,
    ReceivedSeq,
    ReadSeq,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Mutes {
    Table,
    RoomId,
    UserId,
    MutedUntil,
    MutedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ModerationActions {
    Table,
    ModerationActionId,
    RoomId,
    ActorId,
    Kind,
    TargetUserId,
    Seq,
    MuteUntil,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Messages::MessageId).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Messages::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(Messages::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Messages::SenderId).string_len(64).not_null())
                    .col(ColumnDef::new(Messages::Text).text().not_null())
                    .col(ColumnDef::new(Messages::ClientMessageId).string_len(64).not_null())
                    .col(ColumnDef::new(Messages::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Messages::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Messages::DeletedAt).big_integer().null())
                    .col(ColumnDef::new(Messages::DeletedBy).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        // Replay, history and "latest" all walk a room by seq; uniqueness also guards against a
        // second writer ever assigning the same number.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_room_seq")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Idempotent retries: one message per sender and client message id in a room.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_idempotency")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::SenderId)
                    .col(Messages::ClientMessageId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomSequences::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoomSequences::RoomId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(RoomSequences::LastSeq).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MemberCursors::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(MemberCursors::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(MemberCursors::UserId).string_len(64).not_null())
                    .col(ColumnDef::new(MemberCursors::ReceivedSeq).big_integer().not_null())
                    .col(ColumnDef::new(MemberCursors::ReadSeq).big_integer().not_null())
                    .col(ColumnDef::new(MemberCursors::UpdatedAt).big_integer().not_null())
                    .primary_key(Index::create().col(MemberCursors::RoomId).col(MemberCursors::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Mutes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Mutes::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(Mutes::UserId).string_len(64).not_null())
                    .col(ColumnDef::new(Mutes::MutedUntil).big_integer().not_null())
                    .col(ColumnDef::new(Mutes::MutedBy).string_len(64).not_null())
                    .col(ColumnDef::new(Mutes::CreatedAt).big_integer().not_null())
                    .primary_key(Index::create().col(Mutes::RoomId).col(Mutes::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ModerationActions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ModerationActions::ModerationActionId)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ModerationActions::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(ModerationActions::ActorId).string_len(64).not_null())
                    .col(ColumnDef::new(ModerationActions::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(ModerationActions::TargetUserId).string_len(64).not_null())
                    .col(ColumnDef::new(ModerationActions::Seq).big_integer().null())
                    .col(ColumnDef::new(ModerationActions::MuteUntil).big_integer().null())
                    .col(ColumnDef::new(ModerationActions::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_moderation_actions_room")
                    .table(ModerationActions::Table)
                    .col(ModerationActions::RoomId)
                    .col(ModerationActions::ModerationActionId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ModerationActions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Mutes::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(MemberCursors::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RoomSequences::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await
    }
}
